"""netlab — a small network of hosts made of Linux network namespaces.

One namespace per host, each with one interface `eth0` (a veth) whose
other end is a port of the bridge `br0` in a switch namespace of its own.
Every name starts with the lab's prefix, which carries the PID of the
process that made it, so a later run removes what a killed run left
(`Lab.sweep`). Addresses exist only inside these namespaces (10.77.0.0/24
by default); nothing is added to the namespace the runner was started in.

What the switch does to traffic (all in its own namespace, so a host sees
only what a real network would show it):
* loss: iptables `statistic --mode random` DROP on bridged IPv4 packets
  (br_netfilter, bridge-nf-call-iptables=1 in the switch namespace only);
* delay: iptables NFQUEUE on bridged IPv4 packets, held for a fixed time by
  nfqdelay.py (this kernel has no netem);
* cut a host: ebtables DROP of every frame from or to its port (ARP too),
  the link staying up, as when a switch further away fails;
* cut two addresses apart: iptables DROP of IPv4 between them.
"""
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading

HERE = os.path.dirname(os.path.abspath(__file__))
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/run/netns"


# Three gratuitous ARP requests (sender = target = the address, broadcast)
# from eth0 of the namespace this runs in.
GARP = """
import socket, struct, time
address = socket.inet_aton(%r)
sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
sock.bind(("eth0", 0x0806))
mac = sock.getsockname()[4]
frame = (b"\\xff" * 6 + mac + struct.pack("!HHHBBH", 0x0806, 1, 0x0800, 6, 4, 1)
         + mac + address + b"\\0" * 6 + address)
for _ in range(3):
    sock.send(frame)
    time.sleep(0.05)
"""


def sh(*argv, check=True):
    """Runs one command (a list of words), returns its stdout; raises with its stderr."""
    proc = subprocess.run(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), proc.returncode, proc.stderr.strip()))
    return proc.stdout


def enter(ns_name):
    """Moves the calling thread into namespace ns_name (threads and
    processes it starts later are born there)."""
    enter_path(os.path.join(NETNS_DIR, ns_name))


def enter_path(path):
    """Moves the calling thread into the network namespace file path."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns %s: %s" % (path, os.strerror(err)))
    finally:
        os.close(fd)


def kill_inside(ns_name):
    """SIGKILLs, by PID, every process still in namespace ns_name (only a
    lab's own processes are ever there); returns their PIDs."""
    pids = [int(p) for p in sh("ip", "netns", "pids", ns_name, check=False).split() if p.isdigit()]
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return pids


class Lab:
    """The switch and the hosts; every method raises RuntimeError with the
    failing command when the kernel refuses."""

    PREFIX = "jgmh"

    def __init__(self, subnet="10.77.0"):
        self.prefix = "%s%d-" % (self.PREFIX, os.getpid())
        # The namespace the lab was made from, kept open: close() goes back
        # to it, so the runner is never inside a namespace it empties.
        self.home = "/proc/%d/task/%d/ns/net" % (os.getpid(), threading.get_native_id())
        self.home_fd = os.open(self.home, os.O_RDONLY)
        self.subnet = subnet
        self.hosts = {}          # name -> address (last octet)
        self.namespaces = []     # every namespace made, to delete
        self.delayer = None      # nfqdelay.py's Popen
        self.sw = self.prefix + "sw"
        try:
            self._new_ns("sw")
            sh("ip", "-n", self.sw, "link", "add", "br0", "type", "bridge")
            sh("ip", "-n", self.sw, "link", "set", "br0", "up")
            sh("ip", "netns", "exec", self.sw, "sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1")
        except BaseException:
            self.close()              # a half-made lab is removed too
            raise

    # --- making and removing ---

    def _new_ns(self, short):
        name = self.prefix + short
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        return name

    def ns(self, host):
        return self.prefix + host

    def addr(self, host):
        return "%s.%d" % (self.subnet, self.hosts[host])

    def add_host(self, host, octet):
        """A host namespace with eth0 at SUBNET.octet/24 on the bridge."""
        ns = self._new_ns(host)
        port = "p-" + host
        sh("ip", "link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", self.sw)
        sh("ip", "-n", self.sw, "link", "set", port, "master", "br0")
        sh("ip", "-n", self.sw, "link", "set", port, "up")
        sh("ip", "-n", ns, "addr", "add", "%s.%d/24" % (self.subnet, octet), "dev", "eth0")
        sh("ip", "-n", ns, "link", "set", "eth0", "up")
        self.hosts[host] = octet
        return ns

    def add_address(self, host, address):
        """Adds another address (e.g. a service address) to host's eth0 and
        announces it with gratuitous ARP (what keepalived or a cloud's
        floating IP does), so the other hosts send to its new owner now
        rather than when their neighbour entries expire."""
        ns = self.ns(host)
        sh("ip", "-n", ns, "addr", "add", address + "/24", "dev", "eth0")
        code = GARP % (address,)
        sh("ip", "netns", "exec", ns, sys.executable, "-c", code)

    def del_address(self, host, address):
        sh("ip", "-n", self.ns(host), "addr", "del", address + "/24", "dev", "eth0", check=False)

    def popen(self, host, argv, log_path, env=None):
        """Starts argv inside host's namespace (`ip netns exec` execs it:
        the PID is the program's own)."""
        log = open(log_path, "ab")
        try:
            full_env = dict(os.environ)
            full_env.update(env or {})
            return subprocess.Popen(["ip", "netns", "exec", self.ns(host)] + list(argv),
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=full_env)
        finally:
            log.close()

    def close(self):
        """Stops the delayer and deletes every namespace (their interfaces
        go with them). Processes inside must be stopped first."""
        problems = []
        enter_path("/proc/self/fd/%d" % self.home_fd)
        if self.delayer is not None and self.delayer.poll() is None:
            self.delayer.send_signal(signal.SIGTERM)
            try:
                self.delayer.wait(10)
            except subprocess.TimeoutExpired:
                self.delayer.kill()
                self.delayer.wait()
                problems.append("nfqdelay did not stop on SIGTERM")
        for name in reversed(self.namespaces):
            left = kill_inside(name)
            if left:
                problems.append("%s still held processes %s (killed)" % (name, left))
            try:
                sh("ip", "netns", "del", name)
            except RuntimeError as exc:
                problems.append(str(exc))
        self.namespaces = []
        os.close(self.home_fd)
        return problems

    @classmethod
    def sweep(cls):
        """Deletes namespaces left by labs whose process is gone (a run
        killed before its cleanup); returns their names."""
        gone = []
        for line in sh("ip", "netns", "list").splitlines():
            m = re.match(r"(%s(\d+)-\S+)" % cls.PREFIX, line)
            if m and not os.path.exists("/proc/%s" % m.group(2)):
                kill_inside(m.group(1))
                sh("ip", "netns", "del", m.group(1), check=False)
                gone.append(m.group(1))
        return gone

    # --- the switch ---

    def _rule(self, tool, words, add=True):
        if tool == "ebtables" and not shutil.which("ebtables"):
            tool = "ebtables-nft"             # Debian's iptables package installs it under this name
        if add:
            sh("ip", "netns", "exec", self.sw, tool, "-A", "FORWARD", *words)
        else:
            sh("ip", "netns", "exec", self.sw, tool, "-D", "FORWARD", *words)

    def impair(self, delay_ms, loss):
        """Every IPv4 packet crossing the switch: dropped with probability
        loss, the others held delay_ms (one way)."""
        if loss > 0:
            self._rule("iptables", ["-m", "statistic", "--mode", "random",
                                    "--probability", "%.4f" % loss, "-j", "DROP"])
        if delay_ms > 0:
            log = open(os.path.join("/tmp", self.prefix + "nfqdelay.log"), "wb") \
                if os.environ.get("JOBGATE_MULTIHOST_DEBUG") else subprocess.DEVNULL
            self.delayer = subprocess.Popen(
                ["ip", "netns", "exec", self.sw, sys.executable, os.path.join(HERE, "nfqdelay.py"),
                 "--queue", "0", "--delay-ms", str(delay_ms)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
            first = self.delayer.stdout.readline()
            if not first.startswith("nfqdelay: queue"):
                raise RuntimeError("nfqdelay did not start: %r" % first)
            self.delayer.stdout.close()
            if log is not subprocess.DEVNULL:
                log.close()
            # Bypass: with no program bound (not yet, or stopped) packets pass.
            self._rule("iptables", ["-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass"])

    def cut(self, host):
        """No frame from or to host crosses the switch (its link stays up)."""
        port = "p-" + host
        self._rule("ebtables", ["-i", port, "-j", "DROP"])
        self._rule("ebtables", ["-o", port, "-j", "DROP"])

    def heal(self, host):
        port = "p-" + host
        self._rule("ebtables", ["-i", port, "-j", "DROP"], add=False)
        self._rule("ebtables", ["-o", port, "-j", "DROP"], add=False)

    def cut_between(self, a, b):
        """No IPv4 packet between addresses a and b (either way); each still
        reaches everyone else."""
        for src, dst in ((a, b), (b, a)):
            sh("ip", "netns", "exec", self.sw, "iptables", "-I", "FORWARD", "1",
               "-s", src, "-d", dst, "-j", "DROP")

    def heal_between(self, a, b):
        for src, dst in ((a, b), (b, a)):
            sh("ip", "netns", "exec", self.sw, "iptables", "-D", "FORWARD",
               "-s", src, "-d", dst, "-j", "DROP")

    def counters(self):
        """{"delayed": packets queued to nfqdelay, "dropped": packets the loss
        rule dropped}, from the switch's iptables counters."""
        out = {"delayed": 0, "dropped": 0}
        text = sh("ip", "netns", "exec", self.sw, "iptables", "-L", "FORWARD", "-v", "-n", "-x")
        for line in text.splitlines():
            words = line.split()
            if len(words) > 2 and words[0].isdigit():
                if words[2] == "NFQUEUE":
                    out["delayed"] += int(words[0])
                elif words[2] == "DROP" and "statistic" in line:
                    out["dropped"] += int(words[0])
        return out

    def answers(self, address, port, host=None, timeout=1.0):
        """Whether address answers a TCP connection to port (accepts or
        refuses it) within timeout, from host's namespace, or from the
        calling thread's when host is None. False is what a cut looks like."""
        if host is not None:
            code = ("import socket,sys\n"
                    "try: socket.create_connection((%r, %d), timeout=%r).close()\n"
                    "except ConnectionRefusedError: pass\n"
                    "except OSError: sys.exit(1)\n" % (address, port, timeout))
            return subprocess.run(["ip", "netns", "exec", self.ns(host), sys.executable, "-c", code],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        try:
            socket.create_connection((address, port), timeout=timeout).close()
        except ConnectionRefusedError:
            pass
        except OSError:
            return False
        return True
