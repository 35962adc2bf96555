#!/usr/bin/env python3
"""keygen.py — a CURVE key pair from libzmq's zmq_curve_keypair, printed as
`jobgate-broker --gen-keypair` prints one. tests/k8s/run.sh uses it only
while the broker it tests has no --gen-keypair of its own."""
import ctypes
import ctypes.util
import json
import sys

name = ctypes.util.find_library("zmq") or "libzmq.so.5"
try:
    zmq = ctypes.CDLL(name)
except OSError as error:
    sys.exit(f"keygen: cannot load libzmq ({name}): {error}")
public, secret = ctypes.create_string_buffer(41), ctypes.create_string_buffer(41)
if zmq.zmq_curve_keypair(public, secret) != 0:
    sys.exit("keygen: zmq_curve_keypair failed (libzmq built without CURVE?)")
print(json.dumps({"public_key": public.value.decode(), "secret_key": secret.value.decode()}))
