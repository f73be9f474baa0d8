# jpki on Debian 12 with SoftHSM2: `docker build -t jpki . && docker run -p 8000:8000 jpki`
# The data directory (SQLite, SoftHSM token, generated PINs) is a volume; mount your own to keep it.
FROM debian:bookworm-slim

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv python3-dev gcc softhsm2 openssl ca-certificates libpcsclite-dev \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --system --create-home --home-dir /srv/jpki jpki
WORKDIR /srv/jpki/app
# The install below is exactly what tests/test_first_command.py proves on every CI run (`docker
# build` is not available there): it copies these COPY sources, runs this `pip install .` — no
# extras, not editable — in a fresh virtualenv (with pip's cache, the one difference), then
# `--help` for every command of `jpki` and of the device tools (`jpki-card`, `jpki-station`,
# `jpki-phone`: the package declares them, so the image ships the devices too), `jpki init` on a
# new data directory and `jpki serve` on the embedded defaults (SQLite, the SoftHSM token init
# creates, the recipe in jpki/data). The test
# reads the COPY lines and the pip command from this file: change them here and it follows.
COPY pyproject.toml README.md ./
COPY jpki ./jpki
COPY api ./api
COPY hsm ./hsm
COPY devices ./devices
COPY migrations ./migrations
RUN python3 -m venv /srv/jpki/venv \
 && /srv/jpki/venv/bin/pip install --no-cache-dir . \
 && chown -R jpki:jpki /srv/jpki

USER jpki
# JPKI_BASE_URL is written into certificates and CRLs: the URL clients use to reach this
# container. The default fits `docker run -p 8000:8000` on this host; pass your own with -e.
ENV JPKI_DATA_DIR=/srv/jpki/data \
    JPKI_BASE_URL=http://127.0.0.1:8000 \
    PATH=/srv/jpki/venv/bin:$PATH
VOLUME /srv/jpki/data
EXPOSE 8000
CMD ["sh", "-c", "jpki init && exec jpki serve --host 0.0.0.0 --port 8000"]
