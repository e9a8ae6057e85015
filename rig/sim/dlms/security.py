"""The twin meter's DLMS security (Green Book, IEC 62056-5-3 security suite 0): AES-128-GCM with the global
unicast encryption key and the authentication key, HLS-GMAC (mechanism 5), invocation counters and key transfer
(Security Setup, class 64, AES key wrap of RFC 3394 under the master key).

Ciphered APDUs carry a security header: the security control byte (0x30: suite 0, authenticated and encrypted),
then the 4-octet invocation counter (IC); the GCM nonce is the sender's system title and the IC; the additional
authenticated data is the security control byte and the authentication key; the tag is the first 12 octets of
GCM's. Forms the meter deciphers: glo-initiate-request (0x21, in the AARQ), the service-specific glo-get/set/action
requests (0xC8, 0xC9, 0xCB) and general-glo-ciphering (0xDB, with the sender's system title); it answers in the
form it was asked in.

Per association with security (utility settings, push) the meter keeps the highest IC it accepted from each
client system title (the value of the association's invocation counter object 0.0.43.1.x.255 is the highest over
all clients) and its own IC for what it ciphers. Both are written to a JSON file (`counter_file`) on every change,
so they survive a restart of the twin; keys are never written anywhere. A frame whose IC is not above the last
one accepted from its sender is refused, and so is one whose tag does not verify, with the same answer whatever
the cause of a tag failure (a wrong key or a tampered frame look alike).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap

from rig.errors import ConfigError
from rig.sim.dlms.codec import DataError, axdr_length, read_length

AUTHENTICATED_AND_ENCRYPTED, AUTHENTICATED = 0x30, 0x10
TAG_LENGTH = 12
KEY_LENGTH = 16
GLO_INITIATE_REQUEST, GLO_INITIATE_RESPONSE, GENERAL_GLO_CIPHERING = 0x21, 0x28, 0xDB
GLO_REQUESTS = {0xC8: 0xC0, 0xC9: 0xC1, 0xCB: 0xC3}  # glo-get/set/action-request -> the plain request
GLO_RESPONSES = {0xC4: 0xCC, 0xC5: 0xCD, 0xC7: 0xCF}  # plain response -> glo-response
CIPHERED_REQUESTS = frozenset({*GLO_REQUESTS, GENERAL_GLO_CIPHERING})
# ExceptionResponse service-error of a frame the meter cannot accept (Green Book 9.5)
DECIPHERING_ERROR, INVOCATION_COUNTER_ERROR = 5, 6
# Security Setup key_transfer key identifiers
KEY_IDS = {0: "global unicast encryption key", 1: "global broadcast encryption key", 2: "authentication key",
           3: "master key"}
MAX_CLIENT_TITLES = 64  # client system titles remembered per association (the oldest forgotten first)
# The Green Book's example keys: a twin without keys in its bench uses them
EXAMPLE_ENCRYPTION_KEY = bytes.fromhex("000102030405060708090A0B0C0D0E0F")
EXAMPLE_AUTHENTICATION_KEY = bytes.fromhex("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
EXAMPLE_MASTER_KEY = bytes.fromhex("00112233445566778899AABBCCDDEEFF")


class SecurityRefused(Exception):
    """A ciphered frame the meter does not accept; `service_error` is the ExceptionResponse's."""

    def __init__(self, service_error: int, reason: str):
        super().__init__(reason)
        self.service_error = service_error
        self.reason = reason


def parse_key(value: str | bytes | None, what: str, default: bytes) -> bytes:
    """A 128-bit key from its 32 hex digits (as a secret file holds it); ConfigError naming `what`, never the
    value, when it is not one."""
    if value is None:
        return default
    if isinstance(value, bytes):
        raw = value
    else:
        try:
            raw = bytes.fromhex(value.strip())
        except ValueError:
            raise ConfigError(f"{what}: not a key in hex digits") from None
    if len(raw) != KEY_LENGTH:
        raise ConfigError(f"{what}: a suite 0 key is {KEY_LENGTH} octets ({2 * KEY_LENGTH} hex digits), got "
                          f"{len(raw)} octets")
    return raw


def _gcm(key: bytes, system_title: bytes, invocation_counter: int, tag: bytes | None = None):
    nonce = system_title + invocation_counter.to_bytes(4, "big")
    mode = modes.GCM(nonce, tag, min_tag_length=TAG_LENGTH)
    cipher = Cipher(algorithms.AES(key), mode)
    return cipher.decryptor() if tag is not None else cipher.encryptor()


def encrypt(key: bytes, auth_key: bytes, system_title: bytes, invocation_counter: int, plain: bytes,
            security_control: int = AUTHENTICATED_AND_ENCRYPTED) -> bytes:
    """Ciphertext and the 12-octet tag."""
    encryptor = _gcm(key, system_title, invocation_counter)
    encryptor.authenticate_additional_data(bytes([security_control]) + auth_key)
    ciphertext = encryptor.update(plain) + encryptor.finalize()
    return ciphertext + encryptor.tag[:TAG_LENGTH]


def decrypt(key: bytes, auth_key: bytes, system_title: bytes, invocation_counter: int, data: bytes,
            security_control: int = AUTHENTICATED_AND_ENCRYPTED, check_tag: bool = True) -> bytes:
    """The plaintext of ciphertext-and-tag; SecurityRefused(deciphering-error) when the tag does not verify.
    Without check_tag the ciphertext is only deciphered (AES-CTR from GCM's second counter block)."""
    if len(data) < TAG_LENGTH:
        raise SecurityRefused(DECIPHERING_ERROR, "ciphered text shorter than its tag")
    ciphertext, tag = data[:-TAG_LENGTH], data[-TAG_LENGTH:]
    if not check_tag:
        counter_block = system_title + invocation_counter.to_bytes(4, "big") + (2).to_bytes(4, "big")
        decryptor = Cipher(algorithms.AES(key), modes.CTR(counter_block)).decryptor()
        return decryptor.update(ciphertext) + decryptor.finalize()
    decryptor = _gcm(key, system_title, invocation_counter, tag)
    decryptor.authenticate_additional_data(bytes([security_control]) + auth_key)
    try:
        return decryptor.update(ciphertext) + decryptor.finalize()
    except InvalidTag:
        raise SecurityRefused(DECIPHERING_ERROR, "authentication tag does not verify") from None


def gmac(key: bytes, auth_key: bytes, system_title: bytes, invocation_counter: int, challenge: bytes) -> bytes:
    """The 12-octet GMAC of SC (0x10) || AK || challenge: the HLS-GMAC answer to a challenge."""
    encryptor = _gcm(key, system_title, invocation_counter)
    encryptor.authenticate_additional_data(bytes([AUTHENTICATED]) + auth_key + challenge)
    encryptor.finalize()
    return encryptor.tag[:TAG_LENGTH]


def hls_answer(key: bytes, auth_key: bytes, system_title: bytes, invocation_counter: int, challenge: bytes) -> bytes:
    """f(challenge) = SC || IC || GMAC(SC || AK || challenge), as sent in reply_to_HLS_authentication."""
    return (bytes([AUTHENTICATED]) + invocation_counter.to_bytes(4, "big")
            + gmac(key, auth_key, system_title, invocation_counter, challenge))


@dataclass
class Ciphered:
    """A ciphered APDU taken apart: its form (the tag it came with), sender system title (general-glo only),
    security control, invocation counter and ciphertext with tag."""

    form: int
    system_title: bytes | None
    security_control: int
    invocation_counter: int
    payload: bytes


def parse_ciphered(apdu: bytes) -> Ciphered:
    """glo-initiate-request, glo-xxx-request or general-glo-ciphering; DataError when it is none of them."""
    try:
        form, pos, title = apdu[0], 1, None
        if form == GENERAL_GLO_CIPHERING:
            length, pos = read_length(apdu, pos)
            title, pos = bytes(apdu[pos:pos + length]), pos + length
        length, pos = read_length(apdu, pos)
        content = bytes(apdu[pos:pos + length])
    except IndexError:
        raise DataError("ciphered APDU runs past the end") from None
    if len(content) != length or length < 5 + TAG_LENGTH or pos + length != len(apdu):
        raise DataError("ciphered APDU of the wrong length")
    return Ciphered(form, title, content[0], int.from_bytes(content[1:5], "big"), content[5:])


def build_ciphered(form: int, security_control: int, invocation_counter: int, payload: bytes,
                   system_title: bytes | None = None) -> bytes:
    content = bytes([security_control]) + invocation_counter.to_bytes(4, "big") + payload
    title = axdr_length(len(system_title)) + system_title if form == GENERAL_GLO_CIPHERING else b""
    return bytes([form]) + title + axdr_length(len(content)) + content


@dataclass
class SecuritySetup:
    """The keys of one security setup (0.0.43.0.x.255) and the counters of its association."""

    name: str
    encryption_key: bytes
    authentication_key: bytes
    client_titles: dict[str, int] = field(default_factory=dict)  # client system title (hex) -> last IC accepted
    server_counter: int = 0  # the meter's last IC used
    last_client_title: bytes = b""

    def highest_client_counter(self) -> int:
        return max(self.client_titles.values(), default=0)


class CounterStore:
    """The invocation counters of every security setup, in a JSON file (None: in memory only)."""

    def __init__(self, path: Path | None):
        self.path = path
        self.saved: dict[str, dict] = {}
        if path is not None and path.exists():
            try:
                self.saved = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise ConfigError(f"{path}: invocation counters unreadable: {exc}") from None

    def restore(self, setup: SecuritySetup) -> None:
        entry = self.saved.get(setup.name, {})
        setup.client_titles = {str(title): int(value) for title, value in entry.get("clients", {}).items()}
        setup.server_counter = int(entry.get("server", 0))

    def save(self, setups: list[SecuritySetup]) -> None:
        self.saved = {setup.name: {"clients": setup.client_titles, "server": setup.server_counter}
                      for setup in setups}
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(self.saved))
        os.replace(tmp, self.path)


class ServerSecurity:
    """The meter's security setups (by association: 'utility', 'push'), its system title and master key; the
    hooks say whether tags and invocation counters are checked (the defects ignores_hls_tag, accepts_replay)."""

    def __init__(self, system_title: bytes, keys: dict[str, tuple[bytes, bytes]], master_key: bytes,
                 counters: CounterStore, checks_tag: Callable[[], bool] = lambda: True,
                 checks_counter: Callable[[], bool] = lambda: True):
        if len(system_title) != 8:
            raise ConfigError(f"a system title is 8 octets, got {len(system_title)}")
        self.system_title = system_title
        self.master_key = master_key
        self.setups = {name: SecuritySetup(name, *pair) for name, pair in keys.items()}
        self.counters = counters
        for setup in self.setups.values():
            counters.restore(setup)
        self.checks_tag = checks_tag
        self.checks_counter = checks_counter
        self.pending_keys: tuple[str, list[tuple[int, bytes]]] | None = None

    def _save(self) -> None:
        self.counters.save(list(self.setups.values()))

    def setup(self, name: str) -> SecuritySetup:
        return self.setups[name]

    def decipher(self, name: str, client_title: bytes, ciphered: Ciphered) -> bytes:
        """The plaintext of a client's ciphered APDU on association `name`; SecurityRefused when the security
        control is not suite 0 authenticated-and-encrypted, the IC is not above the sender's last, or the tag
        does not verify. The IC is recorded only once the frame is accepted."""
        setup = self.setups[name]
        if ciphered.system_title is not None and ciphered.system_title != client_title:
            raise SecurityRefused(DECIPHERING_ERROR, "system title is not the associated client's")
        if ciphered.security_control != AUTHENTICATED_AND_ENCRYPTED:
            raise SecurityRefused(DECIPHERING_ERROR, f"security control {ciphered.security_control:#04x} is not "
                                                     f"the policy's 0x30")
        title = client_title.hex()
        last = setup.client_titles.get(title, 0)
        if ciphered.invocation_counter <= last and self.checks_counter():
            raise SecurityRefused(INVOCATION_COUNTER_ERROR,
                                  f"invocation counter {ciphered.invocation_counter} not above {last}")
        plain = decrypt(setup.encryption_key, setup.authentication_key, client_title, ciphered.invocation_counter,
                        ciphered.payload, check_tag=self.checks_tag())
        setup.client_titles.pop(title, None)
        setup.client_titles[title] = max(last, ciphered.invocation_counter)
        while len(setup.client_titles) > MAX_CLIENT_TITLES:
            setup.client_titles.pop(next(iter(setup.client_titles)))
        setup.last_client_title = client_title
        self._save()
        return plain

    def next_server_counter(self, name: str) -> int:
        setup = self.setups[name]
        setup.server_counter += 1
        self._save()
        return setup.server_counter

    def cipher(self, name: str, form: int, plain: bytes) -> bytes:
        """A response ciphered with the meter's next IC, in the form matching the request's."""
        setup = self.setups[name]
        counter = self.next_server_counter(name)
        payload = encrypt(setup.encryption_key, setup.authentication_key, self.system_title, counter, plain)
        if form == GENERAL_GLO_CIPHERING:
            return build_ciphered(form, AUTHENTICATED_AND_ENCRYPTED, counter, payload, self.system_title)
        response_form = GLO_INITIATE_RESPONSE if form == GLO_INITIATE_REQUEST else GLO_RESPONSES[plain[0]]
        return build_ciphered(response_form, AUTHENTICATED_AND_ENCRYPTED, counter, payload)

    def client_answer_valid(self, name: str, client_title: bytes, server_challenge: bytes, answer: bytes) -> bool:
        """Pass 3 of HLS-GMAC: is `answer` f(StoC) = SC || IC || GMAC(SC || AK || StoC) under the client's system
        title? (Without tag checks, as the ignores_hls_tag defect, anything of the right shape is.)"""
        if len(answer) != 5 + TAG_LENGTH or answer[0] != AUTHENTICATED:
            return False
        if not self.checks_tag():
            return True
        setup = self.setups[name]
        expected = hls_answer(setup.encryption_key, setup.authentication_key, client_title,
                              int.from_bytes(answer[1:5], "big"), server_challenge)
        return expected == answer

    def server_answer(self, name: str, client_challenge: bytes) -> bytes:
        """Pass 4: f(CtoS) under the meter's system title and its next IC."""
        setup = self.setups[name]
        return hls_answer(setup.encryption_key, setup.authentication_key, self.system_title,
                          self.next_server_counter(name), client_challenge)

    def transfer_keys(self, name: str, keys: list[tuple[int, bytes]]) -> str | None:
        """Security Setup key_transfer: each (key_id, key wrapped under the master key). All unwrap, and they take
        effect once the answer to the transfer has gone (`commit_keys`), or none does (returns why, never a
        key)."""
        unwrapped = []
        for key_id, wrapped in keys:
            if key_id not in (0, 2):
                return f"key id {key_id} ({KEY_IDS.get(key_id, 'unknown')}) is not transferred here"
            try:
                key = aes_key_unwrap(self.master_key, wrapped)
            except (InvalidUnwrap, ValueError):
                return f"the {KEY_IDS[key_id]} does not unwrap under the master key"
            if len(key) != KEY_LENGTH:
                return f"the {KEY_IDS[key_id]} is not {KEY_LENGTH} octets"
            unwrapped.append((key_id, key))
        self.pending_keys = (name, unwrapped)
        return None

    def commit_keys(self) -> None:
        """Apply the keys of the last key_transfer; a new encryption key restarts the association's counters."""
        if self.pending_keys is None:
            return
        name, keys = self.pending_keys
        self.pending_keys = None
        setup = self.setups[name]
        for key_id, key in keys:
            if key_id == 0:
                setup.encryption_key = key
                setup.client_titles.clear()
                setup.server_counter = 0
            else:
                setup.authentication_key = key
        self._save()
