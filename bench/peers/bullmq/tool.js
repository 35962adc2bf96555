// The bench's reader of the BullMQ peer's queue (bench/run.sh calls it; every
// wait bounded):
//
//   node tool.js settle REDIS_PORT OUT SECONDS [QUEUED]
//       poll the queue's counts until nothing waits, is delayed or active in
//       readings at least 1.1 s apart (with QUEUED: until that many wait)
//   node tool.js facts REDIS_PORT IDS OUT
//       per acknowledged id (IDS: the loadgen's ids file), one line
//       "ID STATUS CREATED_MS FINISHED_MS" from the job's hash in Redis
//       (BullMQ's own timestamp and finishedOn, both Date.now() in ms)
'use strict';
const fs = require('fs');
const Redis = require('ioredis');
const { Queue } = require('bullmq');

const queueName = process.env.QUEUE || 'jobs';

async function settle(port, out, seconds, queuedTarget) {
  const queue = new Queue(queueName, { connection: { host: '127.0.0.1', port: Number(port) } });
  const target = queuedTarget ? Number(queuedTarget) : null;
  const start = Date.now();
  let firstOk = null;
  let settled = false;
  let final = null;
  for (;;) {
    const now = Date.now();
    const counts = await queue.getJobCounts('wait', 'active', 'delayed', 'prioritized',
                                            'waiting-children', 'completed', 'failed');
    const queued = counts.wait + counts.delayed + counts.prioritized + counts['waiting-children'];
    final = { t: (now - start) / 1000, queued, running: counts.active,
              completed: counts.completed, failed: counts.failed };
    const ok = target !== null ? queued >= target : queued === 0 && counts.active === 0;
    if (ok) {
      if (firstOk === null) firstOk = now;
      if (now - firstOk >= 1100) { settled = true; break; }
    } else {
      firstOk = null;
    }
    if (now - start > Number(seconds) * 1000) break;
    await new Promise((resolve) => setTimeout(resolve, target !== null ? 250 : 500));
  }
  const summary = { settled, seconds: (Date.now() - start) / 1000, bound_s: Number(seconds),
                    queued_target: target, final };
  fs.writeFileSync(out, JSON.stringify(summary, null, 2));
  console.error('bench: bullmq %s after %s s (%j)', settled ? 'settled' : 'NOT settled',
                summary.seconds.toFixed(1), final);
  await queue.close();
}

async function facts(port, idsPath, out) {
  const queue = new Queue(queueName, { connection: { host: '127.0.0.1', port: Number(port) } });
  const client = new Redis({ host: '127.0.0.1', port: Number(port) });
  const ids = fs.existsSync(idsPath)
    ? fs.readFileSync(idsPath, 'utf8').split('\n').map((line) => line.split(' ')[0]).filter(Boolean)
    : [];
  const lines = [];
  for (let i = 0; i < ids.length; i += 1000) {
    const pipeline = client.pipeline();
    const chunk = ids.slice(i, i + 1000);
    for (const id of chunk) {
      pipeline.hmget(queue.toKey(id), 'timestamp', 'finishedOn', 'processedOn');
      pipeline.zscore(queue.toKey('completed'), id);
      pipeline.zscore(queue.toKey('failed'), id);
    }
    const answers = await pipeline.exec();
    chunk.forEach((id, k) => {
      // the job's set says how it ended (a retried job keeps an earlier failedReason)
      const [error, fields] = answers[3 * k];
      const [created, finished, processed] = error ? [] : fields;
      const completed = answers[3 * k + 1][1] !== null;
      const failed = answers[3 * k + 2][1] !== null;
      let status = 'missing';
      if (created) {
        status = completed ? 'succeeded' : failed ? 'failed' : processed ? 'running' : 'queued';
      }
      lines.push([id, status, created || '-', finished || '-'].join(' '));
    });
  }
  fs.writeFileSync(out, lines.join('\n') + (lines.length ? '\n' : ''));
  client.disconnect();
  await queue.close();
}

const [command, ...args] = process.argv.slice(2);
const run = { settle, facts }[command];
if (!run) {
  console.error('usage: node tool.js settle REDIS_PORT OUT SECONDS [QUEUED] | facts REDIS_PORT IDS OUT');
  process.exit(2);
}
run(...args).then(() => process.exit(0), (error) => { console.error('tool: ' + error.message); process.exit(1); });
