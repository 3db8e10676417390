#!/usr/bin/env bash
# Installs the system packages the test suite's real services need (idempotent).
# The services themselves are started by the tests' fixtures (tests/services/).
set -euo pipefail
echo "install-services: nothing yet"
