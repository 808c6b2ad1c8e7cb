# syntax=docker/dockerfile:1
# The syncseq controller image: a static (musl) binary on distroless, running as 65532.
#
#   docker build -t ghcr.io/syncseq/syncseq:dev .
#   docker run --rm ghcr.io/syncseq/syncseq:dev --help
#
# The binary needs no libc, OpenSSL or tzdata at run time: TLS is rustls (ring) and the time-zone
# database is compiled in (jiff's tzdb-bundle-always). It does need the system CA bundle for alert
# webhooks over HTTPS (rustls-platform-verifier reads /etc/ssl/certs), which is why the base is
# distroless/static (CA certificates, /etc/passwd with nonroot 65532) rather than scratch.

# The toolchain the project is built and tested with (Cargo.toml rust-version is the minimum).
ARG RUST_VERSION=1.95

FROM docker.io/library/rust:${RUST_VERSION}-alpine AS build
# Alpine's Rust targets *-unknown-linux-musl; ring's C and assembly need a C toolchain.
RUN apk add --no-cache musl-dev
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# Fully static, whatever the target's default. The caches keep dependency builds across builds;
# the binary is copied out of the cached target dir.
ENV RUSTFLAGS="-C target-feature=+crt-static"
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin syncseq \
 && cp target/release/syncseq /syncseq

FROM gcr.io/distroless/static:nonroot
COPY --from=build /syncseq /syncseq
USER 65532:65532
# /metrics, /healthz, /readyz (--metrics-address).
EXPOSE 8080
ENTRYPOINT ["/syncseq"]
CMD ["controller"]
