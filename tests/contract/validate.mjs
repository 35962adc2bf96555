// validate.mjs SAMPLES.json — checks what a real stack answered (collect.py)
// against gateway/assets/openapi.json, as a generated client would rely on
// it: each answer's status is one its operation documents, its content type
// one that response documents, its body valid under that schema (JSON
// Schema 2020-12, Ajv), its documented headers present; each event of a
// stream valid under the schema of its event; each job spec the gateway
// accepted valid under JobSpec and each it refused as invalid not; each
// webhook delivery verified with the official Standard Webhooks library and
// valid under the webhooks section's schema. Prints one line per problem and
// exits 1 if there is any.
import { readFileSync } from "node:fs";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { Webhook } from "standardwebhooks";

const doc = JSON.parse(readFileSync(new URL("../../gateway/assets/openapi.json", import.meta.url)));
const samples = JSON.parse(readFileSync(process.argv[2], "utf8"));
// OpenAPI's own keywords (discriminator, example) are annotations here.
const ajv = new Ajv2020({ strict: false, allErrors: true });
addFormats(ajv);
ajv.addSchema(doc, "openapi.json");

const problems = [];
let checked = 0;

const escape = (key) => key.replace(/~/g, "~0").replace(/\//g, "~1");

// resolve follows a $ref within the document: [object, its JSON pointer].
function resolve(object, pointer) {
  while (object && object.$ref) {
    pointer = object.$ref.slice(1);
    object = pointer.split("/").slice(1).reduce((o, k) => o[k.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
  }
  return [object, pointer];
}

function validate(pointer, value, what) {
  const check = ajv.getSchema("openapi.json#" + pointer);
  checked++;
  if (!check(value))
    problems.push(`${what}: ${ajv.errorsText(check.errors, { separator: "; " })}`);
}

// events parses a text/event-stream body into [{event, data}].
function events(raw) {
  return raw.split("\n\n").filter((block) => block.trim() && !block.startsWith(":")).map((block) => {
    const lines = block.split("\n");
    const field = (name) => lines.filter((l) => l.startsWith(name + ": ")).map((l) => l.slice(name.length + 2));
    return { event: field("event")[0] || "message", data: field("data").join("\n") };
  });
}

for (const sample of samples.responses) {
  const what = `${sample.method.toUpperCase()} ${sample.path} ${sample.status}`;
  const opPointer = `/paths/${escape(sample.path)}/${sample.method}`;
  const operation = doc.paths[sample.path] && doc.paths[sample.path][sample.method];
  if (!operation && sample.status === 405 && doc.paths[sample.path]) {
    // A method the path does not take (info.description): a problem, and
    // Allow names exactly the path's operations (GET with HEAD).
    const allow = new Set((sample.headers.allow || "").split(",").map((m) => m.trim()));
    const methods = Object.keys(doc.paths[sample.path]).map((m) => m.toUpperCase());
    if (methods.includes("GET"))
      methods.push("HEAD");
    if (allow.size !== methods.length || !methods.every((m) => allow.has(m)))
      problems.push(`${what}: Allow ${[...allow]} is not the path's methods ${methods}`);
    validate("/components/schemas/Problem", sample.body, what);
    continue;
  }
  if (!operation) {
    problems.push(`${what}: no such operation in the document`);
    continue;
  }
  const [response, responsePointer] = resolve(operation.responses[String(sample.status)],
                                              `${opPointer}/responses/${sample.status}`);
  if (!response) {
    problems.push(`${what}: the operation does not document this status`);
    continue;
  }
  for (const name of Object.keys(response.headers || {}))
    if (!(name.toLowerCase() in sample.headers))
      problems.push(`${what}: documented header ${name} missing`);
  const empty = sample.body === "" || sample.body === null;
  if (empty && !response.content)
    continue;
  const media = response.content && response.content[sample.content_type];
  if (!media) {
    problems.push(`${what}: content type ${sample.content_type} not documented (${Object.keys(response.content || {})})`);
    continue;
  }
  const mediaPointer = `${responsePointer}/content/${escape(sample.content_type)}`;
  if (sample.content_type === "text/event-stream") {
    const schemas = media["x-event-data"];
    for (const event of events(sample.raw || sample.body)) {
      if (!schemas) break;
      if (!(event.event in schemas)) {
        problems.push(`${what}: undocumented event ${event.event}`);
        continue;
      }
      validate(`${mediaPointer}/x-event-data/${event.event}`, JSON.parse(event.data),
               `${what} event ${event.event}`);
    }
    continue;
  }
  if (sample.content_type.endsWith("json"))
    validate(`${mediaPointer}/schema`, sample.body, what);
  else
    checked++;
}

for (const { spec, valid } of samples.specs) {
  const check = ajv.getSchema("openapi.json#/components/schemas/JobSpec");
  checked++;
  if (check(spec) !== valid)
    problems.push(`JobSpec ${JSON.stringify(spec).slice(0, 120)}: the gateway ${valid ? "accepted" : "refused"} it, the schema ${valid ? "refuses" : "accepts"} it`);
}

const hook = new Webhook(samples.webhook_secret);
const hookSchema = "/webhooks/jobFinished/post/requestBody/content/application~1json/schema";
for (const delivery of samples.webhooks) {
  const headers = Object.fromEntries(Object.entries(delivery.headers).map(([k, v]) => [k.toLowerCase(), v]));
  try {
    // The official library checks the signature and the timestamp's age.
    const payload = hook.verify(delivery.body, headers);
    validate(hookSchema, payload, "webhook delivery");
  } catch (error) {
    problems.push(`webhook delivery: ${error.message}`);
  }
}
if (samples.webhooks.length === 0)
  problems.push("no webhook delivery was collected");

for (const problem of problems)
  console.log("contract: " + problem);
console.log(`contract: ${checked} checks, ${problems.length} problems`);
process.exit(problems.length ? 1 : 0);
