#!/usr/bin/env bash
# revocation-propagation.sh — how long a key revoked on one keygate replica
# keeps working on another that shares its PostgreSQL database
# (state.database): N keys are created on replica A, verified on both, then
# deleted or disabled on A while replica B is polled until it answers 401.
# Prints p50/p99/max of those delays.
#
# Usage: scripts/revocation-propagation.sh   (REVOCATIONS [1000])
# Needs what the test suite needs (PostgreSQL; scripts/test installs it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KEYGATE_REVOCATIONS=${REVOCATIONS:-1000} exec cargo test --locked --test postgres \
    replicas_share_keys_and_revocations_reach_every_replica_within_a_second -- --nocapture
