#!/usr/bin/env python3
"""nfqdelay — a fixed one-way delay for packets, in user space.

This kernel has no `tc netem` (nor fq, for an eBPF earliest-departure-time
delay), but it has NFQUEUE: an iptables rule hands each packet to a
netlink socket and the kernel holds it until a program gives its verdict.
This program gives every packet of one queue its ACCEPT verdict DELAY ms
after it arrived, and nothing else: the packet itself is never copied
(NFQNL_COPY_META) or changed.

Packet ids of a queue grow by one per packet and the delay is the same for
all, so the verdicts are due in id order and one NFQNL_MSG_VERDICT_BATCH
("every id up to N") releases all that are due. A batch also covers a packet
whose notification the socket dropped (ENOBUFS): nothing is held forever.

Run it in the namespace whose iptables rule queues the packets:
    nfqdelay.py --queue 0 --delay-ms 5
It stops on SIGTERM (the packets still held are released by the kernel
when the socket closes: an unbound queue with --queue-bypass lets them pass).
Python standard library only (the netlink messages are packed by hand;
layouts from linux/netfilter/nfnetlink_queue.h).
"""
import argparse
import collections
import errno
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLMSG_ERROR = 0x2
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET = 0
NFQNL_MSG_CONFIG = 2
NFQNL_MSG_VERDICT_BATCH = 3
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD = 1
NFQA_CFG_PARAMS = 2
NFQA_CFG_QUEUE_MAXLEN = 3
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
SO_RCVBUFFORCE = 33


def attr(kind, payload):
    """One netlink attribute, padded to 4 bytes."""
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * ((4 - length % 4) % 4)


def message(msg_type, queue, attrs, seq, flags=NLM_F_REQUEST):
    """nlmsghdr + nfgenmsg (AF_UNSPEC, version 0, the queue number big-endian) + attributes."""
    body = struct.pack("=BB", 0, 0) + struct.pack("!H", queue) + b"".join(attrs)
    return struct.pack("=IHHII", 16 + len(body), (NFNL_SUBSYS_QUEUE << 8) | msg_type,
                       flags, seq, 0) + body


def packet_ids(data):
    """The packet ids of the NFQNL_MSG_PACKET messages in one datagram."""
    ids = []
    offset = 0
    while offset + 16 <= len(data):
        length, msg_type, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, offset)
        if length < 16:
            break
        if msg_type == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
            pos = offset + 20                      # past nlmsghdr and nfgenmsg
            end = offset + length
            while pos + 4 <= end:
                alen, akind = struct.unpack_from("=HH", data, pos)
                if alen < 4:
                    break
                if (akind & 0x7fff) == NFQA_PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, pos + 4)[0])
                    break
                pos += (alen + 3) & ~3
        elif msg_type == NLMSG_ERROR:
            code = struct.unpack_from("=i", data, offset + 16)[0]
            if code != 0:
                raise OSError(-code, "nfqueue: " + errno.errorcode.get(-code, str(-code)))
        offset += (length + 3) & ~3
    return ids


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queue", type=int, default=0)
    ap.add_argument("--delay-ms", type=float, required=True)
    ap.add_argument("--maxlen", type=int, default=65536, help="packets the kernel may hold for us")
    args = ap.parse_args(argv)
    delay = args.delay_ms / 1000.0

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))

    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    sock.bind((0, 0))
    seq = 1
    for attrs in ([attr(NFQA_CFG_CMD, struct.pack("=BB", NFQNL_CFG_CMD_BIND, 0) + struct.pack("!H", socket.AF_INET))],
                  [attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                   attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", args.maxlen))]):
        sock.send(message(NFQNL_MSG_CONFIG, args.queue, attrs, seq, NLM_F_REQUEST | NLM_F_ACK))
        packet_ids(sock.recv(65536))               # the ACK, or raises the kernel's error
        seq += 1
    print("nfqdelay: queue %d, %.1f ms" % (args.queue, args.delay_ms), flush=True)
    sock.setblocking(False)

    held = collections.deque()                     # (due, packet id), in arrival order
    passed = 0
    overruns = 0
    while not stop:
        now = time.monotonic()
        last = None
        while held and held[0][0] <= now:
            last = held.popleft()[1]
            passed += 1
        if last is not None:
            sock.send(message(NFQNL_MSG_VERDICT_BATCH, args.queue,
                              [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, last))], seq))
            seq += 1
        timeout = max(0.0, held[0][0] - now) if held else 0.5
        try:
            readable, _, _ = select.select([sock], [], [], timeout)
        except InterruptedError:
            continue
        if not readable:
            continue
        for _ in range(256):
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:     # notifications lost; a later batch covers them
                    overruns += 1
                    continue
                raise
            arrived = time.monotonic() + delay
            for pid in packet_ids(data):
                held.append((arrived, pid))
    if held:                                       # release what is held before leaving
        sock.send(message(NFQNL_MSG_VERDICT_BATCH, args.queue,
                          [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, held[-1][1]))], seq))
        passed += len(held)
    print("nfqdelay: %d packets delayed, %d receive overruns" % (passed, overruns), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
