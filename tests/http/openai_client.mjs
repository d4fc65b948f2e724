// The official `openai` npm package against hybridserve's HTTP API:
//   node openai_client.mjs BASE_URL [API_KEY]      (BASE_URL like http://127.0.0.1:8080/v1)
// Runs a completion, a streamed chat completion (with usage) and error cases; exits non-zero on
// the first failure.
import OpenAI from 'openai';

const [baseURL, apiKey = 'no-key'] = process.argv.slice(2);
if (!baseURL) {
  console.error('usage: node openai_client.mjs BASE_URL [API_KEY]');
  process.exit(2);
}
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 120_000 });

function check(cond, what, detail) {
  if (!cond) {
    console.error(`FAIL: ${what}${detail === undefined ? '' : ': ' + JSON.stringify(detail)}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

function checkUsage(u, what, maxCompletion) {
  check(u && Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, `${what}: usage.prompt_tokens`, u);
  check(Number.isInteger(u.completion_tokens) && u.completion_tokens > 0 &&
          u.completion_tokens <= maxCompletion, `${what}: usage.completion_tokens`, u);
  check(u.total_tokens === u.prompt_tokens + u.completion_tokens, `${what}: usage.total_tokens`, u);
}

async function expectError(promise, status, code, what) {
  try {
    await promise;
  } catch (e) {
    check(e instanceof OpenAI.APIError, `${what}: an APIError`, String(e));
    check(e.status === status, `${what}: status ${status}`, e.status);
    check(e.code === code, `${what}: code ${code}`, { code: e.code, message: e.message });
    check(typeof e.message === 'string' && e.message.length > 10, `${what}: a message`, e.message);
    return e;
  }
  check(false, `${what}: the request should have failed`);
}

async function main() {
  const models = await client.models.list();
  const model = models.data[0]?.id;
  check(typeof model === 'string' && model.length > 0, 'models.list names the model', models.data);

  // 1. a completion
  const c = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 8, temperature: 0,
  });
  check(c.object === 'text_completion', 'completion object', c.object);
  check(typeof c.choices[0].text === 'string', 'completion text', c.choices[0]);
  check(['stop', 'length'].includes(c.choices[0].finish_reason), 'completion finish_reason',
        c.choices[0].finish_reason);
  checkUsage(c.usage, 'completion', 8);

  // 2. a streamed chat completion, usage included; the same text as without streaming
  const messages = [
    { role: 'system', content: 'You are terse.' },
    { role: 'user', content: 'Say hello.' },
  ];
  const stream = await client.chat.completions.create({
    model, messages, max_tokens: 8, temperature: 0, stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let chunks = 0;
  let finish = null;
  let usage = null;
  for await (const chunk of stream) {
    chunks += 1;
    check(chunk.object === 'chat.completion.chunk', `chunk ${chunks} object`, chunk.object);
    for (const ch of chunk.choices) {
      text += ch.delta?.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
    if (chunk.usage) usage = chunk.usage;
  }
  check(chunks >= 2, 'the stream has several chunks', chunks);
  check(finish === 'stop' || finish === 'length', 'the stream ends with a finish_reason', finish);
  checkUsage(usage, 'stream usage', 8);
  const plain = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
  check(plain.choices[0].message.role === 'assistant', 'chat message role');
  check(plain.choices[0].message.content === text, 'streamed text equals the non-streamed text',
        { streamed: text, plain: plain.choices[0].message.content });
  checkUsage(plain.usage, 'chat usage', 8);

  // 3. errors
  const bad = await expectError(
      client.completions.create({ model, prompt: 'x', temperature: 5 }), 400, 'invalid_value',
      'temperature out of range');
  check(bad.param === 'temperature', 'the error names the parameter', bad.param);
  check(bad instanceof OpenAI.BadRequestError, 'a BadRequestError');
  await expectError(
      client.completions.create({ model, prompt: 'word '.repeat(5000), max_tokens: 4 }), 400,
      'context_length_exceeded', 'context overflow');
  if (apiKey !== 'no-key') {
    const wrong = new OpenAI({ baseURL, apiKey: 'wrong-key', maxRetries: 0 });
    const e = await expectError(wrong.models.list(), 401, 'invalid_api_key', 'wrong API key');
    check(e instanceof OpenAI.AuthenticationError, 'an AuthenticationError');
  }
  console.log('openai client: all checks passed');
}

main().catch((e) => {
  console.error('FAIL:', e);
  process.exit(1);
});
