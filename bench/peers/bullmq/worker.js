// The BullMQ peer's worker: a BullMQ Worker making each job's upstream call
// with Node's http client over one keep-alive agent (connections reused, no
// socket cap), CONCURRENCY calls at once, the answer's JSON as the job's
// return value (kept in Redis, as jobgate keeps the result). bench/run.sh
// starts as many as jobgate has workers, with the same concurrency:
//
//   REDIS_PORT=… UPSTREAM=http://127.0.0.1:PORT CONCURRENCY=2500 node worker.js
'use strict';
const http = require('http');
const { Worker } = require('bullmq');

const connection = { host: '127.0.0.1', port: Number(process.env.REDIS_PORT) };
const upstream = new URL(process.env.UPSTREAM);
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 100000 });

function call(path) {
  return new Promise((resolve, reject) => {
    const request = http.request({ host: upstream.hostname, port: upstream.port, path, agent,
                                   method: 'GET', timeout: 30000 }, (answer) => {
      const chunks = [];
      answer.on('data', (chunk) => chunks.push(chunk));
      answer.on('end', () => {
        if (answer.statusCode !== 200) {
          reject(new Error('upstream answered ' + answer.statusCode));
          return;
        }
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')));
        } catch (error) {
          reject(error);
        }
      });
      answer.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error('upstream timed out')));
    request.on('error', reject);
    request.end();
  });
}

const worker = new Worker(process.env.QUEUE || 'jobs', (job) => call(job.data.path), {
  connection,
  concurrency: Number(process.env.CONCURRENCY || 2500),
});
worker.on('error', (error) => console.error('worker: ' + error.message));

async function stop() {
  await worker.close(true);   // the bench stops workers after the drain: nothing is left to finish
  agent.destroy();
  process.exit(0);
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
