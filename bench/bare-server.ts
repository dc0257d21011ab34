import Fastify from 'fastify';

/**
 * The ceiling for section 5: a bare Fastify route on this machine, same Fastify as pgkeep's
 * API, no auth, no validation, no Redis. Listens on PORT until SIGTERM.
 */
const server = Fastify({ logger: false });
server.get('/bare', async () => ({ success: true, data: { ok: true } }));
process.on('SIGTERM', () => {
  server.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
});
await server.listen({ host: '127.0.0.1', port: Number(process.env.PORT ?? 0) });
process.stdout.write('listening\n');
