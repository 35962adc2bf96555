// sdk_test.mjs — the official OpenAI SDK for Node against jobgate's door
// (SPEC §3.1). tests/integration/test_openai.py starts the stack and runs
// this with JOBGATE_BASE_URL (http://127.0.0.1:PORT/v1), JOBGATE_KEY, and
// JOBGATE_TIGHT_KEY (a tenant with a tiny tokens_per_day). The last line
// printed is a JSON object: case name → "ok" or "FAIL: why"; the exit
// status is 1 when any case failed.
import OpenAI from 'openai';

const baseURL = process.env.JOBGATE_BASE_URL;
// No SDK retries: each case sees exactly what the door answered.
const options = { baseURL, maxRetries: 0, timeout: 60000 };
const client = new OpenAI({ ...options, apiKey: process.env.JOBGATE_KEY });
const results = {};

function check (condition, what) {
    if (!condition)
        throw new Error(what);
}

async function run (name, body) {
    try {
        await body();
        results[name] = 'ok';
    } catch (error) {
        results[name] = 'FAIL: ' + (error && error.stack ? error.stack : String(error));
    }
}

// expectError runs call and checks it raises errorClass (with status).
async function expectError (call, errorClass, status) {
    let raised = null;
    try {
        await call();
    } catch (error) {
        raised = error;
    }
    check(raised, 'no error raised');
    check(raised instanceof errorClass,
          `raised ${raised.constructor.name} (${raised.status} ${raised.message}), not ${errorClass.name}`);
    check(raised.status === status, `status ${raised.status}, expected ${status}`);
    return raised;
}

const user = (text) => [{ role: 'user', content: text }];

await run('chat_plain', async () => {
    const answer = await client.chat.completions.create({ model: 'gpt-mock', messages: user('hello sdk') });
    check(answer.choices[0].message.content === 'Echo: hello sdk', JSON.stringify(answer));
    check(answer.usage && answer.usage.total_tokens === 5, JSON.stringify(answer.usage));
});

await run('chat_provider_model', async () => {
    const answer = await client.chat.completions.create({ model: 'other/llama-x', messages: user('hi') });
    check(answer.model === 'llama-x', JSON.stringify(answer));
    check(answer.choices[0].message.content === 'Echo: hi', JSON.stringify(answer));
});

await run('chat_stream', async () => {
    const words = Array.from({ length: 12 }, (_, i) => `s${i}`);
    const stream = await client.chat.completions.create({
        model: 'gpt-mock', messages: user(words.join(' ')), stream: true,
        stream_options: { include_usage: true },
    });
    let text = '';
    let contentChunks = 0;
    let finish = null;
    let usage = null;
    for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (choice && choice.delta.content) {
            text += choice.delta.content;
            contentChunks++;
        }
        if (choice && choice.finish_reason)
            finish = choice.finish_reason;
        if (chunk.usage)
            usage = chunk.usage;
    }
    check(text === 'Echo: ' + words.join(' '), text);
    check(contentChunks > 1, `${contentChunks} content chunks`);
    check(finish === 'stop', `finish_reason ${finish}`);
    check(usage && usage.completion_tokens === words.length + 1, JSON.stringify(usage));
});

await run('embeddings', async () => {
    // The SDK asks for base64 and decodes it into numbers.
    const answer = await client.embeddings.create({ model: 'text-embedding-mock', input: ['one', 'two words'] });
    check(answer.data.length === 2, JSON.stringify(answer));
    check(answer.data.every((item) => item.embedding.length === 8
                            && item.embedding.every((x) => typeof x === 'number' && x >= -0.5 && x <= 0.5)),
          JSON.stringify(answer.data));
    check(answer.usage.prompt_tokens === 3, JSON.stringify(answer.usage));
});

await run('models', async () => {
    const ids = [];
    for await (const model of client.models.list())
        ids.push(model.id);
    check(JSON.stringify(ids) === JSON.stringify(['mock/gpt-mock', 'mock/text-embedding-mock']), ids.join(','));
});

await run('unknown_model', async () => {
    const error = await expectError(
        () => client.chat.completions.create({ model: 'no-such-model', messages: user('x') }),
        OpenAI.NotFoundError, 404);
    check(error.code === 'model_not_found', `code ${error.code}`);
});

await run('bad_key', async () => {
    const stranger = new OpenAI({ ...options, apiKey: 'not-a-jobgate-key' });
    const error = await expectError(
        () => stranger.chat.completions.create({ model: 'gpt-mock', messages: user('x') }),
        OpenAI.AuthenticationError, 401);
    check(error.code === 'invalid_api_key', `code ${error.code}`);
});

await run('over_token_budget', async () => {
    // tokens_per_day 1: the first call spends it, a later one is refused.
    const tight = new OpenAI({ ...options, apiKey: process.env.JOBGATE_TIGHT_KEY });
    let refused = null;
    for (let call = 0; call < 5 && !refused; call++) {
        try {
            await tight.chat.completions.create({ model: 'gpt-mock', messages: user('spend tokens') });
        } catch (error) {
            refused = error;
        }
    }
    check(refused, 'never refused');
    check(refused instanceof OpenAI.RateLimitError,
          `raised ${refused.constructor.name} (${refused.status} ${refused.message})`);
    check(refused.code === 'rate_limit_exceeded', `code ${refused.code}`);
    check(refused.headers && Number(refused.headers['retry-after']) >= 1,
          `Retry-After ${refused.headers && refused.headers['retry-after']}`);
});

console.log(JSON.stringify(results));
process.exit(Object.values(results).some((outcome) => outcome.startsWith('FAIL')) ? 1 : 0);
