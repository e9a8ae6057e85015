"""The twin's head-end system by layer: api, api_accounts, api_commands, api_base (HTTP routes), auth (operators,
bearer tokens, the permission table), audit (the audit log), engine (accounts and the prepaid policy), commands
(queue and executor), meter_link and dlms_link (how it reaches the meters), hooks (where its defects act)."""
