"""The security probes of a DLMS/COSEM meter (MeterSecurity): what a client without the right, with a wrong key,
or replaying captured frames gets from the meter. Each probe makes its own associations (the driver's own is
released first: an HDLC line carries one at a time) under the driver's deadline and leaves none open; every APDU
is a transcript exchange in hex, keys redacted.

The frames a sound client never sends (a replay, a stale invocation counter, a wrong key) are built here with
dlms-cosem's APDU classes and its AES-GCM primitives (security suite 0).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from dlms_cosem import cosem, dlms_data, enumerations, security
from dlms_cosem.protocol import acse, xdlms

from rig.errors import ConfigError, InstrumentError, InstrumentTimeout
from rig.roles.security import MeterSecurity, SecurityProbe

READER_SAP, UTILITY_SAP = 32, 48
DISCONNECT_CONTROL = cosem.CosemMethod(enumerations.CosemInterface(70), cosem.Obis(0, 0, 96, 3, 10, 255), 1)
CLOCK_TIME = cosem.CosemAttribute(enumerations.CosemInterface(8), cosem.Obis(0, 0, 1, 0, 0, 255), 2)
REPLY_TO_HLS = cosem.CosemMethod(enumerations.CosemInterface.ASSOCIATION_LN, cosem.Obis(0, 0, 40, 0, 0, 255), 1)
CIPHERED = security.SecurityControlField(0, authenticated=True, encrypted=True)
AUTHENTICATED = security.SecurityControlField(0, authenticated=True)
EXCEPTION_RESPONSE = 0xD8


def describe(apdu: bytes) -> str:
    """A meter's plain answer as the Green Book names it."""
    try:
        if apdu[:1] == bytes([EXCEPTION_RESPONSE]) and len(apdu) == 3:
            state_error = enumerations.StateException(apdu[1]).name.lower().replace("_", "-")
            service_error = enumerations.ServiceException(apdu[2]).name.lower().replace("_", "-")
            return f"exception-response {state_error}/{service_error}"
        answer = xdlms.ActionResponseFactory.from_bytes(apdu) if apdu[:1] == b"\xc7" else \
            xdlms.GetResponseFactory.from_bytes(apdu)
    except (ValueError, IndexError, KeyError):
        return f"APDU {apdu.hex()}"
    result = getattr(answer, "status", None) or getattr(answer, "error", None)
    return f"{type(answer).__name__} {getattr(result, 'name', 'success')}".lower()


class DlmsSecurityProbes(MeterSecurity):
    """MeterSecurity for DlmsMeter (drivers/dlms_meter.py): needs the secrets `lls_password` (reader) and
    `encryption_key`, `authentication_key` (utility settings)."""

    def _probe(self, name: str, body: Callable[[list], SecurityProbe]) -> SecurityProbe:
        """Run body(sessions) in a worker under three deadlines (a probe makes up to two associations); every
        session it opens is closed after it."""
        self.close()
        sessions: list = []
        outcome: list[tuple[bool, object]] = []

        def work() -> None:
            try:
                outcome.append((True, body(sessions)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                outcome.append((False, exc))
            finally:
                for session in sessions:
                    self._release(session)

        with self._lock:
            worker = threading.Thread(target=work, daemon=True, name=f"dlms probe {self.role}")
            worker.start()
            worker.join(3 * self.deadline_s)
            if not outcome:
                for session in sessions:
                    session.abort()
                raise InstrumentTimeout(f"{self._where()}: security probe {name} not done within "
                                        f"{3 * self.deadline_s:g} s")
        ok, value = outcome[0]
        if ok:
            return value
        raise value

    def _utility_keys(self) -> tuple[bytes, bytes]:
        if self.keys is None:
            raise ConfigError(f"roles.{self.role}.secrets.encryption_key and authentication_key: required to probe "
                              f"the utility settings association")
        return self.keys

    def _send_raw(self, session, data: bytes, what: str) -> bytes:
        """One APDU as given, past the library's state machine; the meter's answer."""
        t_sent = time.monotonic()
        try:
            answer = bytes(session.io.send(data))
        except Exception as exc:  # noqa: BLE001 - socket, serial and library errors alike
            self.transcript.record(self.role, data.hex(), None, t_mono=t_sent, note=str(exc))
            raise InstrumentError(f"{self._where()}: exchange {what} failed: {exc}") from None
        self.transcript.record(self.role, data.hex(), answer.hex(), t_mono=t_sent, note=what)
        return answer

    def _decipher(self, answer: bytes, meter_title: bytes) -> bytes:
        """A general-glo-ciphering answer deciphered with the bench's keys (the meter's answer as it meant it)."""
        frame = xdlms.GeneralGlobalCipher.from_bytes(answer)
        key, auth_key = self._utility_keys()
        return bytes(security.decrypt(frame.security_control, meter_title or frame.system_title,
                                      frame.invocation_counter, key, frame.ciphered_text, auth_key))

    def _utility_session(self, sessions: list, keys: tuple[bytes, bytes] | None = None):
        session = self._new_session(UTILITY_SAP, "hls-gmac", keys=keys or self._utility_keys())
        sessions.append(session)
        return session

    # -- the probes -------------------------------------------------------------------------------------------

    def disconnect_as_reader(self) -> SecurityProbe:
        attempt = "remote_disconnect over the meter reader association (client 32, LLS)"
        password = self.secrets.get("lls_password")
        if not password:
            raise ConfigError(f"roles.{self.role}.secrets.lls_password: required to probe the meter reader "
                              f"association")

        def body(sessions: list) -> SecurityProbe:
            session = self._new_session(READER_SAP, "lls", password.encode())
            sessions.append(session)
            self._associate(session)
            data = session.client.dlms_connection.send(
                xdlms.ActionRequestNormal(DISCONNECT_CONTROL, dlms_data.IntegerData(0).to_bytes()))
            answer = self._send_raw(session, data, "ACTION remote_disconnect as the meter reader")
            session.associated = False  # the library's state machine did not see the answer: no RLRQ through it
            refused = not (answer[:1] == b"\xc7" and len(answer) >= 4 and answer[3] == 0)
            return SecurityProbe(attempt, refused, describe(answer))
        return self._probe("disconnect_as_reader", body)

    def associate_with_wrong_key(self) -> SecurityProbe:
        attempt = "HLS-GMAC association (client 48) with a wrong authentication key"

        def body(sessions: list) -> SecurityProbe:
            key, auth_key = self._utility_keys()
            wrong = auth_key[:-1] + bytes([auth_key[-1] ^ 0x5A])
            session = self._utility_session(sessions, (key, wrong))
            self._continue_invocation_counter(session)
            self._open_link(session)
            connection = session.client.dlms_connection
            answer = self._send_raw(session, connection.send(connection.get_aarq()), "AARQ with a wrong key")
            aare = acse.ApplicationAssociationResponse.from_bytes(answer)
            if aare.result is not enumerations.AssociationResult.ACCEPTED:
                content = aare.user_information.content if aare.user_information else None
                detail = f", {content.error.name.lower().replace('_', '-')}" if content is not None and \
                    isinstance(content, xdlms.ConfirmedServiceError) else ""
                return SecurityProbe(attempt, True, f"AARE {aare.result.name.lower()}, "
                                                    f"{aare.result_source_diagnostics.name.lower()}{detail}")
            counter = connection.client_invocation_counter
            title = connection.client_system_title
            proof = (AUTHENTICATED.to_bytes() + counter.to_bytes(4, "big")
                     + security.gmac(AUTHENTICATED, title, counter, key, wrong, aare.authentication_value))
            reply = xdlms.ActionRequestNormal(REPLY_TO_HLS, dlms_data.OctetStringData(proof).to_bytes()).to_bytes()
            frame = xdlms.GeneralGlobalCipher(title, CIPHERED, counter,
                                              security.encrypt(CIPHERED, title, counter, key, reply, wrong))
            answer = self._send_raw(session, frame.to_bytes(), "reply_to_HLS_authentication with a wrong key")
            if answer[:1] == bytes([EXCEPTION_RESPONSE]):
                return SecurityProbe(attempt, True, f"AARE accepted, then {describe(answer)}")
            plain = self._decipher(answer, aare.system_title)
            accepted = plain[:1] == b"\xc7" and len(plain) >= 4 and plain[3] == 0
            return SecurityProbe(attempt, not accepted, f"AARE accepted, then {describe(plain)}")
        return self._probe("associate_with_wrong_key", body)

    def replay_ciphered_frame(self) -> SecurityProbe:
        attempt = "a ciphered GET of the clock sent again as captured (replay)"

        def body(sessions: list) -> SecurityProbe:
            session = self._utility_session(sessions)
            self._associate(session)
            connection = session.client.dlms_connection
            captured = connection.send(xdlms.GetRequestNormal(CLOCK_TIME))
            first = self._send_raw(session, captured, "ciphered GET clock")
            connection.receive_data(first)
            connection.next_event()
            again = self._send_raw(session, captured, "the same ciphered GET again (replay)")
            return self._judged(attempt, again, connection.meter_system_title)
        return self._probe("replay_ciphered_frame", body)

    def send_stale_invocation_counter(self) -> SecurityProbe:
        attempt = "a freshly ciphered GET of the clock with the last invocation counter used"

        def body(sessions: list) -> SecurityProbe:
            session = self._utility_session(sessions)
            self._associate(session)
            connection = session.client.dlms_connection
            key, auth_key = self._utility_keys()
            stale = connection.client_invocation_counter - 1  # the counter of the last request: not above it
            title = connection.client_system_title
            plain = xdlms.GetRequestNormal(CLOCK_TIME).to_bytes()
            frame = xdlms.GeneralGlobalCipher(title, CIPHERED, stale,
                                              security.encrypt(CIPHERED, title, stale, key, plain, auth_key))
            answer = self._send_raw(session, frame.to_bytes(), f"ciphered GET clock with invocation counter {stale}")
            return self._judged(attempt, answer, connection.meter_system_title)
        return self._probe("send_stale_invocation_counter", body)

    def _judged(self, attempt: str, answer: bytes, meter_title: bytes | None) -> SecurityProbe:
        """Refused: an exception-response; accepted: a ciphered answer (deciphered to say what it held)."""
        if answer[:1] == bytes([EXCEPTION_RESPONSE]):
            return SecurityProbe(attempt, True, describe(answer))
        try:
            return SecurityProbe(attempt, False, f"answered: {describe(self._decipher(answer, meter_title))}")
        except Exception:  # noqa: BLE001 - whatever it holds, the meter answered it
            return SecurityProbe(attempt, False, f"answered: APDU {answer[:1].hex()}...")
