#!/usr/bin/python3
"""A real DCE/RPC client fleet for stickylb's tests, on impacket.

For each source address given, as one Unity-like client would: ask the
endpoint mapper at the balancer (TCP 135, or --epm-port) for srvsvc's
port with ept_map, connect to that port at the balancer, bind srvsvc and
call NetrServerGetInfo (level 101), which names the server that
answered. With --iface UUID VERSION the client asks for that interface
instead (EMSMDB or NSPI of a simulated CAS, say), binds it on the port
returned and calls nothing: there is no server to name. Every socket is
bound to the client's source address first, so the balancer sees many
clients. One JSON line per client (and interface) on stdout:
{"src": ..., "iface": ..., "port": ..., "bound": ..., "server": ...,
"error": ...}.

Usage: rpcclient.py [--epm-port PORT] [--iface UUID VERSION]...
                    BALANCER SRC [SRC ...]
"""
import argparse
import json
import socket

from impacket.dcerpc.v5 import epm, srvs, transport
from impacket.uuid import uuidtup_to_bin

_source = None
_socket = socket.socket


class _BoundSocket(_socket):
    """A socket that binds to the current client's source address."""

    def connect(self, addr):
        if _source is not None:
            self.bind((_source, 0))
        return super().connect(addr)


socket.socket = _BoundSocket


def dial(binding):
    """A connected DCE/RPC handle on an ncacn_ip_tcp string binding."""
    t = transport.DCERPCTransportFactory(binding)
    t.set_connect_timeout(5)
    dce = t.get_dce_rpc()
    dce.connect()
    return dce


def one(balancer, epm_port, src, iface):
    global _source
    _source = src
    out = {"src": src, "iface": "", "port": 0, "bound": False, "server": "", "error": ""}
    try:
        uuid = srvs.MSRPC_UUID_SRVS if iface is None else uuidtup_to_bin(iface)
        if iface is not None:
            out["iface"] = "%s v%s" % iface
        # hept_map dials 135 by itself; any other port is a handle of our
        # own, bound to the endpoint mapper by hept_map.
        mapper = None if epm_port == 135 else dial("ncacn_ip_tcp:%s[%d]" % (balancer, epm_port))
        binding = epm.hept_map(balancer, uuid, protocol="ncacn_ip_tcp", dce=mapper)
        if mapper is not None:
            mapper.disconnect()
        out["port"] = int(binding.rsplit("[", 1)[1].rstrip("]"))
        dce = dial(binding)
        dce.bind(uuid)
        out["bound"] = True
        if iface is None:
            info = srvs.hNetrServerGetInfo(dce, 101)
            out["server"] = str(info["InfoStruct"]["ServerInfo101"]["sv101_name"]).rstrip("\x00 ")
        dce.disconnect()
    except Exception as e:  # reported per client; the fleet goes on
        out["error"] = "%s: %s" % (type(e).__name__, e)
    return out


def main():
    ap = argparse.ArgumentParser(description="impacket DCE/RPC client fleet for stickylb's tests")
    ap.add_argument("--epm-port", type=int, default=135, help="the endpoint mapper's port (135)")
    ap.add_argument("--iface", nargs=2, action="append", metavar=("UUID", "VERSION"),
                    help="look up and bind this interface (such as 1.0), not srvsvc; repeatable")
    ap.add_argument("balancer")
    ap.add_argument("sources", nargs="+")
    args = ap.parse_args()
    ifaces = [tuple(i) for i in args.iface] if args.iface else [None]
    for src in args.sources:
        for iface in ifaces:
            print(json.dumps(one(args.balancer, args.epm_port, src, iface)), flush=True)


if __name__ == "__main__":
    main()
