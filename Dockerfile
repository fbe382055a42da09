# tollgate: a static-enough release binary on a distroless, non-root base. One image for the
# controller (`tollgate run`) and the logmetrics sidecar (`tollgate logmetrics`).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY crds ./crds
# Not built here, but the manifest names them: cargo refuses a manifest whose targets are missing.
COPY benches ./benches
COPY tests ./tests
RUN cargo build --release --locked --bin tollgate

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/tollgate /usr/local/bin/tollgate
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tollgate"]
