// mutations.mjs MANIFEST_DIR SECRETS_FILE ADAPTER_VALUES — the validator must pass the
// manifests as shipped and refuse each mistake below, made in a copy of
// them: one edit of one file's text per case (it must match exactly once),
// and the problem it must cause. Each kind of check of validate.mjs is
// exercised, so a check that stopped working fails this test.
// Prints one line per case and "N passed, N failed".
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync, copyFileSync } from "node:fs";
import { join, basename } from "node:path";
import { tmpdir } from "node:os";
import { validate } from "./validate.mjs";

const cases = [
    // 1. schema
    ["a field of the wrong type", "worker.yaml", "  replicas: 2\n", "  replicas: \"2\"\n",
     "schema: /spec/replicas must be integer"],
    ["an apiVersion removed from Kubernetes", "broker.yaml", "apiVersion: policy/v1\n", "apiVersion: policy/v1beta1\n",
     "apiVersion policy/v1beta1 kind PodDisruptionBudget was removed in Kubernetes 1.25"],
    ["an apiVersion Kubernetes never had", "worker.yaml", "apiVersion: autoscaling/v2\n", "apiVersion: autoscaling/v3\n",
     "apiVersion autoscaling/v3 kind HorizontalPodAutoscaler is not in the Kubernetes API"],
    ["a required field missing", "gateway.yaml", "  scaleTargetRef: { apiVersion: apps/v1, kind: Deployment, name: jobgate-gateway }\n", "",
     "(scaleTargetRef)"],
    ["a YAML key given twice", "worker.yaml", "      terminationGracePeriodSeconds: 45\n",
     "      terminationGracePeriodSeconds: 45\n      terminationGracePeriodSeconds: 40\n", "YAML: Map keys must be unique"],
    // 2. strict fields
    ["a misspelt field (a cluster drops it in silence)", "gateway.yaml", "          readinessProbe:\n", "          readinesProbe:\n",
     "unknown field spec.template.spec.containers.0.readinesProbe"],
    ["a field one level too deep", "broker.yaml", "  serviceName: jobgate-broker-headless\n",
     "  serviceName: jobgate-broker-headless\n  template2: {}\n", "unknown field spec.template2"],
    // 3. apiserver rules
    ["a port name longer than 15 characters", "broker.yaml", "            - { name: publisher, containerPort: 5557 }",
     "            - { name: publisher-of-events, containerPort: 5557 }", "is not an IANA service name"],
    ["a port out of range", "gateway.yaml", "            - { name: http, containerPort: 8080 }",
     "            - { name: http, containerPort: 80800 }", "container gateway port 80800 is not from 1 to 65535"],
    ["a label value with a space", "secret.yaml", "labels: { app.kubernetes.io/name: jobgate }",
     "labels: { app.kubernetes.io/name: job gate }", "label value \"job gate\""],
    // 4. references
    ["a Service that selects no pods", "broker.yaml",
     "  selector: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: broker }\n  ports:\n    - { name: frontend, port: 5555, targetPort: frontend }\n    - { name: backend",
     "  selector: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: brokr }\n  ports:\n    - { name: frontend, port: 5555, targetPort: frontend }\n    - { name: backend",
     "Service/jobgate-broker: spec.selector selects no pods"],
    ["a Service targetPort no container has", "gateway.yaml", "    - { name: http, port: 80, targetPort: http }",
     "    - { name: http, port: 80, targetPort: web }", "targetPort web is not a port of Deployment/jobgate-gateway"],
    ["a probe on a port the container does not name", "gateway.yaml", "            httpGet: { path: /readyz, port: http }",
     "            httpGet: { path: /readyz, port: htp }", "readinessProbe names port htp"],
    ["a selector that does not select the template", "worker.yaml",
     "    matchLabels: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: worker }\n  strategy:",
     "    matchLabels: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: workers }\n  strategy:",
     "spec.selector does not select the pod template's labels"],
    ["a mount of a volume that does not exist", "worker.yaml", "            - { name: tmp, mountPath: /tmp }",
     "            - { name: temp, mountPath: /tmp }", "volumeMount temp has no volume"],
    ["a Secret that is not defined", "worker.yaml", "              - secret: { name: jobgate-curve-worker }",
     "              - secret: { name: jobgate-curve-workers }", "Secret jobgate-curve-workers is not defined"],
    ["an HPA on a Deployment that does not exist", "worker.yaml",
     "kind: Deployment, name: jobgate-worker }", "kind: Deployment, name: jobgate-workers }", "scaleTargetRef apps/v1 Deployment/jobgate-workers is not defined"],
    ["a CPU-utilisation HPA on pods that request no CPU", "worker.yaml", "            requests: { cpu: 500m, memory: 256Mi }",
     "            requests: { memory: 256Mi }", "container worker of jobgate-worker requests none"],
    ["a StatefulSet governed by a Service that is not headless", "broker.yaml", "  clusterIP: None\n", "",
     "spec.serviceName jobgate-broker-headless is not a headless Service"],
    ["a PodDisruptionBudget that covers no pod", "broker.yaml",
     "spec:\n  maxUnavailable: 0\n  selector:\n    matchLabels: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: broker }",
     "spec:\n  maxUnavailable: 0\n  selector:\n    matchLabels: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: brocker }",
     "PodDisruptionBudget/jobgate-broker: spec.selector selects no pods"],
    ["a NetworkPolicy admitting to a port the broker does not have", "networkpolicy.yaml",
     "        - { protocol: TCP, port: 5556 }\n    - from:", "        - { protocol: TCP, port: 5558 }\n    - from:",
     "ingress[1]: port 5558 is not a port of StatefulSet/jobgate-broker"],
    ["a NetworkPolicy peer that matches no pod", "networkpolicy.yaml",
     "            matchLabels: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: worker }\n      ports:\n        - { protocol: TCP, port: 5556 }\n    - from:",
     "            matchLabels: { app.kubernetes.io/name: jobgate, app.kubernetes.io/component: wrker }\n      ports:\n        - { protocol: TCP, port: 5556 }\n    - from:",
     "ingress[1]: a podSelector selects no pods"],
    ["an HPA on an external metric the adapter does not serve", "worker.yaml", "          name: jobgate_queued_jobs\n",
     "          name: jobgate_queue_depth\n", "external metric jobgate_queue_depth is not served by the adapter"],
    // 5. jobgate's config, its files and its environment
    ["Secret files a non-root process cannot read (no fsGroup for mode 0440)", "gateway.yaml",
     "        runAsGroup: 10001\n        fsGroup: 10001\n", "        runAsGroup: 10001\n",
     "container gateway (uid 10001) cannot read the files of volume curve (mode 0440, no fsGroup)"],
    ["service links left on (JOBGATE_BROKER_PORT… in every container)", "worker.yaml",
     "      enableServiceLinks: false\n", "", "Deployment/jobgate-worker: enableServiceLinks must be false"],
    ["config.json that is not JSON", "configmap.yaml", "\"worker\":   { \"concurrency\": 512 },", "\"worker\":   { \"concurrency\": 512 }",
     "config.json is not JSON"],
    ["a key file no Secret provides", "configmap.yaml", "/run/secrets/jobgate/curve/authorized_keys\"",
     "/run/secrets/jobgate/curve/authorised_keys\"", "reads security.curve.authorized_keys_file = /run/secrets/jobgate/curve/authorised_keys, which no mounted Secret provides"],
    ["a role that does not mount its keys", "worker.yaml", "            - { name: curve, mountPath: /run/secrets/jobgate/curve, readOnly: true }\n",
     "", "volume curve is mounted by no container"],
    ["the gateway's API keys not mounted", "gateway.yaml", "mountPath: /run/secrets/jobgate/api-keys,",
     "mountPath: /run/secrets/jobgate/apikeys,", "reads gateway.api_keys_file = /run/secrets/jobgate/api-keys/api_keys.json, which no mounted Secret provides"],
];

const [manifestDir, secretsFile, adapterValues] = process.argv.slice(2);
if (!manifestDir || !secretsFile || !adapterValues) {
    console.error("usage: mutations.mjs MANIFEST_DIR SECRETS_FILE ADAPTER_VALUES");
    process.exit(2);
}
const originals = Object.fromEntries(readdirSync(manifestDir).filter((f) => /\.ya?ml$/.test(f))
    .map((f) => [f, readFileSync(join(manifestDir, f), "utf8")]));
let passed = 0, failed = 0;
const work = mkdtempSync(join(tmpdir(), "jobgate-k8s-"));
try {
    const pristine = validate([manifestDir, secretsFile], adapterValues);
    if (pristine.problems.length === 0) {
        passed++;
        console.log(`ok   the manifests as shipped: ${pristine.summary}`);
    } else {
        failed++;
        console.log(`FAIL the manifests as shipped:\n  ${pristine.problems.join("\n  ")}`);
    }
    for (const [what, file, from, to, expected] of cases) {
        const text = originals[file];
        const count = text === undefined ? 0 : text.split(from).length - 1;
        if (count !== 1) {
            failed++;
            console.log(`FAIL ${what}: the edit matches ${count} times in ${file} (the manifests changed?)`);
            continue;
        }
        const dir = mkdtempSync(join(work, "case-"));
        for (const [name, original] of Object.entries(originals))
            writeFileSync(join(dir, name), name === file ? text.replace(from, to) : original);
        copyFileSync(secretsFile, join(dir, basename(secretsFile)));
        const result = validate([dir], adapterValues);
        if (result.problems.some((line) => line.includes(expected))) {
            passed++;
            console.log(`ok   refused: ${what}`);
        } else {
            failed++;
            console.log(`FAIL not refused: ${what} (expected "${expected}"; got: ${result.problems.join(" | ") || "no problem"})`);
        }
    }
} finally {
    rmSync(work, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
