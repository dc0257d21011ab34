# One image for both processes: the API (default command) and the worker
# (`node --enable-source-maps apps/worker/dist/main.js`), each the JavaScript bundle that
# scripts/build.mjs makes of its TypeScript sources.

# --- build: all dependencies (esbuild is a dev dependency), then the bundles ---
FROM node:20-bookworm-slim AS build
WORKDIR /app
# Manifests first, so that `npm ci` is cached until a dependency changes. Every workspace's
# package.json must be here: npm ci refuses a lockfile that names a workspace it cannot see.
COPY package.json package-lock.json ./
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY packages/core/package.json packages/core/
COPY packages/engine/package.json packages/engine/
COPY packages/notify/package.json packages/notify/
COPY packages/pg/package.json packages/pg/
COPY packages/queue/package.json packages/queue/
COPY packages/storage/package.json packages/storage/
RUN npm ci --no-audit --no-fund
COPY tsconfig.json ./
COPY scripts ./scripts
COPY packages ./packages
COPY apps ./apps
# The API's OpenAPI document takes its examples from here (bundled into apps/api/dist).
COPY docs/api-examples.json ./docs/
# Writes apps/*/dist afresh (and removes whatever else a dist copied from the host held).
RUN node scripts/build.mjs

# --- the image: production dependencies, the sources and their bundles ---
FROM node:20-bookworm-slim

# pg_dump must be at least as new as the server's major version. Debian bookworm ships
# PostgreSQL 15 client tools, which match the postgres:15 of docker-compose.yml; a newer server
# needs a newer postgresql-client. zstd compresses the dump stream; util-linux brings setpriv,
# through which pg_dump and zstd die with the worker. postgresql-15 brings the server programs
# a point-in-time restore runs (postgres, pg_controldata, pg_verifybackup), without a cluster.
RUN apt-get update \
  && apt-get install -y --no-install-recommends postgresql-common \
  && sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' \
    /etc/postgresql-common/createcluster.conf \
  && apt-get install -y --no-install-recommends postgresql-client postgresql-15 zstd tar \
    util-linux ca-certificates \
  && rm -rf /var/lib/apt/lists/*

WORKDIR /app
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=5000 \
    BACKUP_DIR=/app/backups

COPY package.json package-lock.json ./
COPY apps/api/package.json apps/api/
COPY apps/worker/package.json apps/worker/
COPY packages/core/package.json packages/core/
COPY packages/engine/package.json packages/engine/
COPY packages/notify/package.json packages/notify/
COPY packages/pg/package.json packages/pg/
COPY packages/queue/package.json packages/queue/
COPY packages/storage/package.json packages/storage/
# The bundles import every third-party package from node_modules at run time; esbuild, the
# test runners and the linters stay out.
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force

# The sources stay beside the bundles: the source maps point stack traces at them, and
# `node --import tsx apps/<app>/src/main.ts` still runs them.
COPY tsconfig.json ./
COPY packages ./packages
COPY apps ./apps
COPY --from=build /app/apps/api/dist apps/api/dist
COPY --from=build /app/apps/worker/dist apps/worker/dist

RUN mkdir -p /app/backups && chown node:node /app/backups
VOLUME /app/backups

USER node
EXPOSE 5000
# --enable-source-maps: stack traces name the .ts files and lines.
CMD ["node", "--enable-source-maps", "apps/api/dist/main.js"]
