// The BullMQ peer's front door: what a Node team would put in front of a
// queue of slow upstream calls. Fastify (logger off) validates the same job
// body jobgate takes with a JSON schema, adds it to a BullMQ queue on Redis
// and answers 202 with the job's id once queue.add has returned (the job is
// in Redis, appended to the AOF; with appendfsync always, fsync'd before
// Redis answers). With `Prefer: wait=N` it answers 200 with the result when
// the job finishes (job.waitUntilFinished on a QueueEvents stream), as
// jobgate's wait mode does. bench/run.sh starts it:
//
//   PORT=… REDIS_PORT=… [FRONTS=N] node front.js
//
// FRONTS=N > 1 runs N Fastify processes on the port through Node's cluster
// module (the primary hands out connections), as Node services use the
// cores; the primary then only forks and forwards SIGTERM.
//
//   POST /v1/jobs   {"kind":"http","provider":"mock","request":{"path":"/json?…"}}
//                   -> 202 {"id","status":"queued"}, or 200 {"id","status":"succeeded","result"}
//   GET  /healthz   -> 200 once Redis answers
'use strict';
const cluster = require('cluster');

const fronts = Number(process.env.FRONTS || 1);
if (fronts > 1 && cluster.isPrimary) {
  for (let i = 0; i < fronts; i++) cluster.fork();
  const stopAll = () => {
    for (const child of Object.values(cluster.workers)) child.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 5000).unref();
    cluster.on('exit', () => { if (Object.keys(cluster.workers).length === 0) process.exit(0); });
  };
  process.on('SIGTERM', stopAll);
  process.on('SIGINT', stopAll);
  cluster.on('exit', (child, code) => {
    if (code) console.error('front: process ' + child.process.pid + ' exited with ' + code);
  });
} else {
  serve();
}

function serve() {
  const { Queue, QueueEvents } = require('bullmq');
  const fastify = require('fastify')({ logger: false, bodyLimit: 65536 });

  const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
  const queueName = process.env.QUEUE || 'jobs';
  // Jobs are kept after they finish (their result readable by id, as jobgate
  // keeps them); a failed call is retried twice with backoff, as jobgate's
  // default policy retries.
  const queue = new Queue(queueName, {
    connection,
    defaultJobOptions: { attempts: 3, backoff: { type: 'exponential', delay: 1000 },
                         removeOnComplete: false, removeOnFail: false },
  });
  let events = null;       // opened on the first waiting request: it reads every job's events

  const jobSchema = {
    type: 'object',
    required: ['kind', 'provider', 'request'],
    properties: {
      kind: { const: 'http' },
      provider: { type: 'string', minLength: 1, maxLength: 64 },
      request: {
        type: 'object',
        required: ['path'],
        properties: { path: { type: 'string', pattern: '^/', maxLength: 2048 } },
      },
    },
  };

  function preferWait(header) {
    const match = /(?:^|[;,\s])wait=(\d+)/.exec(header || '');
    return match ? Math.min(Number(match[1]), 60) : 0;
  }

  fastify.post('/v1/jobs', { schema: { body: jobSchema } }, async (request, reply) => {
    const job = await queue.add('call', { path: request.body.request.path });
    const wait = preferWait(request.headers.prefer);
    if (!wait) {
      reply.code(202);
      return { id: job.id, status: 'queued' };
    }
    if (!events) {
      events = new QueueEvents(queueName, { connection });
      await events.waitUntilReady();
    }
    try {
      const result = await job.waitUntilFinished(events, wait * 1000);
      return { id: job.id, status: 'succeeded', result };
    } catch (error) {
      // not finished within the wait (or failed): the job goes on, as jobgate's 202 says
      reply.code(/timed out/i.test(String(error && error.message)) ? 202 : 502);
      return { id: job.id, status: 'queued', error: String(error && error.message) };
    }
  });

  fastify.get('/healthz', async () => {
    await queue.waitUntilReady();
    return { ok: true };
  });

  async function stop() {
    await fastify.close();
    if (events) await events.close();
    await queue.close();
    process.exit(0);
  }
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);

  fastify.listen({ host: '127.0.0.1', port: Number(process.env.PORT), backlog: 4096 })
    .catch((error) => { console.error('front: ' + error.message); process.exit(1); });
}
