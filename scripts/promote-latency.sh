#!/usr/bin/env bash
# promote-latency.sh — how long `deploy.promote` takes from the API call to
# traffic switched with 10,000 file routes in the routing table: a release
# build of the gateway, PROMOTES promotes back and forth (default 50),
# median and max printed.
#
# Usage: scripts/promote-latency.sh   (PROMOTES [50])
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
KEYGATE_PROMOTES=${PROMOTES:-50} exec cargo test --locked --release --test deployments \
    a_promote_switches_traffic_with_ten_thousand_routes_in_the_table -- --nocapture
