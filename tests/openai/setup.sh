#!/bin/sh
# setup.sh — what the door's SDK test needs (tests/integration/test_openai.py
# runs it): Node.js and npm (Debian's Node 18 is enough for the pinned SDK)
# and the OpenAI SDK pinned in package-lock.json (tests/npm-setup.sh).
exec "$(dirname "$0")/../npm-setup.sh" "$(dirname "$0")" openai
