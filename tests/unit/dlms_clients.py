"""In-process DLMS clients of the twin meter for the unit tests: dlms-cosem's sans-IO connection as utility
settings (client SAP 48, HLS-GMAC with the Green Book's example keys, the twin's defaults), exchanging APDUs with
the meter's handle_apdu."""

from dlms_cosem import cosem, dlms_data, enumerations
from dlms_cosem.connection import DlmsConnection
from dlms_cosem.protocol import xdlms

from rig.sim.dlms.association import Link
from rig.sim.dlms.security import GENERAL_GLO_CIPHERING, build_ciphered, decrypt, encrypt, parse_ciphered

H = bytes.fromhex
EK = H("000102030405060708090A0B0C0D0E0F")
AK = H("D0D1D2D3D4D5D6D7D8D9DADBDCDDDEDF")
CLIENT_TITLE = b"RIGHL001"
METER_TITLE = b"RIG" + (1).to_bytes(5, "big")  # "RIG" and the serial's digits (SIM0001)
UTILITY = 48
AUTHENTICATED_AND_ENCRYPTED = 0x30
HLS_REPLY = cosem.CosemMethod(enumerations.CosemInterface.ASSOCIATION_LN, cosem.Obis(0, 0, 40, 0, 0, 255), 1)


class Client:
    """dlms-cosem's sans-IO connection as utility settings, exchanging APDUs with the meter in process."""

    def __init__(self, meter, keys=(EK, AK), counter: int = 1, title: bytes = CLIENT_TITLE):
        self.meter, self.link, self.keys, self.title = meter, Link("tcp"), keys, title
        self.connection = DlmsConnection(
            client_system_title=title, authentication_method=enumerations.AuthenticationMechanism.HLS_GMAC,
            global_encryption_key=keys[0], global_authentication_key=keys[1], client_invocation_counter=counter)
        self.sent: list[bytes] = []

    def raw(self, data: bytes) -> bytes:
        self.sent.append(data)
        return self.meter.handle_apdu(self.link, UTILITY, data)

    def exchange(self, apdu):
        answer = self.raw(self.connection.send(apdu))
        self.connection.receive_data(answer)
        return self.connection.next_event()

    def associate(self):
        aare = self.exchange(self.connection.get_aarq())
        reply = dlms_data.OctetStringData(self.connection.get_hls_reply()).to_bytes()
        answer = self.exchange(xdlms.ActionRequestNormal(HLS_REPLY, reply))
        return aare, answer

    def plain(self, request: bytes) -> bytes:
        """A plain xDLMS request as octets, sent in general-glo-ciphering under the next invocation counter; the
        meter's answer deciphered."""
        counter = self.connection.client_invocation_counter
        self.connection.client_invocation_counter += 1
        sealed = encrypt(*self.keys, self.title, counter, request)
        answer = parse_ciphered(self.raw(build_ciphered(GENERAL_GLO_CIPHERING, AUTHENTICATED_AND_ENCRYPTED,
                                                        counter, sealed, self.title)))
        return decrypt(*self.keys, METER_TITLE, answer.invocation_counter, answer.payload)


def utility(meter) -> Client:
    """An authenticated utility settings association with the meter."""
    client = Client(meter)
    client.associate()
    return client
