# syntax=docker/dockerfile:1
#
# keygate container image.
#
#   docker build -t keygate .               # --build-arg PGO=1: faster binary, slower build
#   docker run -d --name keygate -p 8080:8080 -p 9901:9901 keygate
#   curl http://localhost:8080/hello          # built-in echo instance
#   curl http://localhost:9901/healthz
#   docker exec keygate keygate routes
#
# Default config: config/docker.yaml (echo routes; http and admin on 0.0.0.0).
# Your own config: mount it over /etc/keygate/keygate.yaml and listen on
# 0.0.0.0 in it, not 127.0.0.1, or nothing outside the container reaches it:
#   docker run -v $PWD/my.yaml:/etc/keygate/keygate.yaml:ro -p 8080:8080 -p 9901:9901 keygate
# TLS certificates: mount a directory at /etc/keygate/certs. Persistent state
# (keys DB, ACME account and certificates, the local root key): mount a
# volume at /var/lib/keygate; /etc/keygate/state is a symlink to it, so a
# mounted config's default `state.dir: state/` lands there too.
# Operations guide: docs/operations.md ("Docker").
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

############################ build ############################
FROM rust:1-bookworm AS builder

# A Rust toolchain is all the build needs: no cmake or other C build tools
# beyond the image's own (pingora-core is vendored with a pure-Rust zlib).
WORKDIR /src
COPY . .
# The commit `keygate_build_info` reports (the build context has no .git):
#   docker build --build-arg KEYGATE_COMMIT=$(git rev-parse --short=12 HEAD) .
ARG KEYGATE_COMMIT=unknown

# Profile-guided optimisation (9-20 % more requests per CPU, two whole
# builds: ~25 min on two cores) with scripts/build-pgo.sh, which installs
# the llvm-profdata of the image's rustc from apt and fails when Debian has
# none for that LLVM version:
#   docker build --build-arg PGO=1 -t keygate .
ARG PGO=0

# The registry and target dir are cache mounts, so rebuilds after a source
# change reuse compiled dependencies; the binary is copied out of the mount,
# stripped of its symbols (`install -s`).
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    if [ "$PGO" = 1 ]; then \
        scripts/build-pgo.sh > /tmp/built; \
    else \
        cargo build --profile production --locked --bin keygate \
        && echo target/production/keygate > /tmp/built; \
    fi \
 && install -D -s -m 0755 "$(tail -n 1 /tmp/built)" /out/keygate

############################ runtime ############################
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# Fixed numeric ids, so Kubernetes' runAsNonRoot can verify the USER below.
RUN groupadd --system --gid 10001 keygate \
 && useradd --system --uid 10001 --gid keygate --home-dir /var/lib/keygate \
        --no-create-home --shell /usr/sbin/nologin keygate

COPY --from=builder /out/keygate /usr/local/bin/keygate

# Default config, validated here so a broken default fails the image build.
COPY config/docker.yaml /etc/keygate/keygate.yaml
RUN mkdir -p /etc/keygate/certs /var/lib/keygate \
 && ln -s /var/lib/keygate /etc/keygate/state \
 && chown keygate:keygate /var/lib/keygate \
 && chmod 0750 /var/lib/keygate \
 && keygate check --config /etc/keygate/keygate.yaml

# user keygate
USER 10001:10001
WORKDIR /var/lib/keygate
ENV KEYGATE_CONFIG=/etc/keygate/keygate.yaml

# 8080 http, 8443 https, 9901 admin (/healthz, /readyz, /metrics, admin API)
EXPOSE 8080 8443 9901

# Healthy once the gateway answers /readyz on the admin listener of the
# config in use (listen.admin must stay enabled in a mounted config).
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/keygate", "health", "--config", "/etc/keygate/keygate.yaml"]

ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["run", "--config", "/etc/keygate/keygate.yaml"]
