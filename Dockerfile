# syntax=docker/dockerfile:1
#
# keygate container image.
#
#   docker build -t keygate .
#   docker run --rm -p 8080:8080 -p 9901:9901 keygate
#   curl -H 'Host: localhost' http://127.0.0.1:8080/hello   # built-in echo instance
#
# Your own config: mount it over /etc/keygate/keygate.yaml (listen on 0.0.0.0,
# not 127.0.0.1, or nothing outside the container can reach it), e.g.
#   docker run -v $PWD/my.yaml:/etc/keygate/keygate.yaml:ro -p 8080:8080 keygate
# TLS certificates: mount a directory at /etc/keygate/certs. Persistent state
# (keys DB, ACME account and certificates): mount a volume at /var/lib/keygate;
# /etc/keygate/state is a symlink to it, so the default `state.dir: state/`
# (relative to the config file) lands there.
#
# Needs BuildKit (the default builder since Docker 23) for the cache mounts.

############################ build ############################
FROM rust:1-bookworm AS builder

# cmake: libz-ng-sys (flate2, via pingora-core) builds zlib-ng with it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY . .

# The registry and target dir are cache mounts, so rebuilds after a source
# change reuse compiled dependencies; the binary is copied out of the mount.
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked --bin keygate \
 && install -D -m 0755 target/release/keygate /out/keygate

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

# Default config: the repo's config/keygate.yaml, with its loopback listen
# addresses opened to 0.0.0.0 (a container's 127.0.0.1 is unreachable from
# outside). Validated here so a broken default fails the image build.
COPY config/keygate.yaml /etc/keygate/keygate.yaml
RUN sed -i -E 's/^([[:space:]]*(http|https|admin):[[:space:]]*"?)127\.0\.0\.1:/\10.0.0.0:/' \
        /etc/keygate/keygate.yaml \
 && mkdir -p /etc/keygate/certs /var/lib/keygate \
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

ENTRYPOINT ["/usr/local/bin/keygate"]
CMD ["run", "--config", "/etc/keygate/keygate.yaml"]
