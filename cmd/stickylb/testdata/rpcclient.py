#!/usr/bin/python3
"""A real DCE/RPC client fleet for stickylb's tests, on impacket.

For each source address given, as one Unity-like client would: ask the
endpoint mapper at the balancer (TCP 135) for srvsvc's port with ept_map,
connect to that port at the balancer, bind srvsvc and call
NetrServerGetInfo (level 101), which names the server that answered. Every
socket is bound to the client's source address first, so the balancer
sees many clients. One JSON line per client on stdout:
{"src": ..., "port": ..., "server": ..., "error": ...}.

Usage: rpcclient.py BALANCER SRC [SRC ...]
"""
import json
import socket
import sys

from impacket.dcerpc.v5 import epm, srvs, transport

_source = None
_socket = socket.socket


class _BoundSocket(_socket):
    """A socket that binds to the current client's source address."""

    def connect(self, addr):
        if _source is not None:
            self.bind((_source, 0))
        return super().connect(addr)


socket.socket = _BoundSocket


def one(balancer, src):
    global _source
    _source = src
    out = {"src": src, "port": 0, "server": "", "error": ""}
    try:
        binding = epm.hept_map(balancer, srvs.MSRPC_UUID_SRVS, protocol="ncacn_ip_tcp")
        out["port"] = int(binding.rsplit("[", 1)[1].rstrip("]"))
        t = transport.DCERPCTransportFactory(binding)
        t.set_connect_timeout(5)
        dce = t.get_dce_rpc()
        dce.connect()
        dce.bind(srvs.MSRPC_UUID_SRVS)
        info = srvs.hNetrServerGetInfo(dce, 101)
        out["server"] = str(info["InfoStruct"]["ServerInfo101"]["sv101_name"]).rstrip("\x00 ")
        dce.disconnect()
    except Exception as e:  # reported per client; the fleet goes on
        out["error"] = "%s: %s" % (type(e).__name__, e)
    return out


def main():
    balancer, sources = sys.argv[1], sys.argv[2:]
    for src in sources:
        print(json.dumps(one(balancer, src)), flush=True)


if __name__ == "__main__":
    main()
