"""Wire protocol: binary frame codec and the schemas of control messages."""

from mlitb.protocol.frames import HEADER_SIZE, VERSION, Frame, MessageType, decode, encode, error_frame
from mlitb.protocol.messages import DataInfo, JoinRequest, Welcome, parse_join

__all__ = [
    "HEADER_SIZE", "VERSION", "Frame", "MessageType", "decode", "encode", "error_frame",
    "DataInfo", "JoinRequest", "Welcome", "parse_join",
]
