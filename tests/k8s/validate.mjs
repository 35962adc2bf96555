// validate.mjs [--adapter VALUES] FILE_OR_DIR… — checks Kubernetes manifests offline, the way a
// cluster would refuse or silently mis-run them:
//
// 1. schema: every document is parsed strictly (YAML 1.1 as Kubernetes
//    reads it, duplicate keys refused) and validated against the JSON schema of its apiVersion/kind,
//    generated from the Kubernetes OpenAPI (npm kubernetes-models 4.5.1:
//    Kubernetes 1.32's API); an apiVersion removed by Kubernetes 1.27 (the
//    oldest these manifests are for), e.g. policy/v1beta1, is refused;
// 2. strict fields: a field the schema does not name (a typo such as
//    readinesProbe, which a cluster drops in silence) is refused, as
//    `kubectl --validate=strict` would. The generated validators ignore
//    unknown fields, so each field is probed: its value is replaced by one
//    no schema type accepts, and a field whose replacement the schema does
//    not reject is one it does not know;
// 3. apiserver rules the schema leaves out: DNS-1123 names, label syntax,
//    port numbers and IANA port names;
// 4. references between objects, which no schema sees: selectors that
//    select the pods they mean, named ports, volumes, Secrets and ConfigMaps
//    that exist, HPA targets, StatefulSet governing Services, CPU requests
//    for CPU-utilisation HPAs, NetworkPolicy ports on the pods they admit to,
//    and (--adapter) external metrics that prometheus-adapter's values serve;
// 5. jobgate's own: the ConfigMap's config.json parses, every file it
//    names (security.curve.*_file, gateway.api_keys_file) is provided, in
//    each pod of the roles that read it, by a mounted Secret key its
//    non-root process may read, and no pod gets Kubernetes' service-link variables (JOBGATE_BROKER_PORT…),
//    which jobgate refuses as unknown overrides.
//
// Prints one line per problem ("FILE: KIND/NAME: what") and a summary;
// exits 1 when there is any problem, 2 on bad usage.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, basename, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { parseAllDocuments } from "yaml";

const require = createRequire(import.meta.url);
let problems = [];
let docs = [];

function problem(doc, text) {
    const line = `${doc.file}: ${doc.kind ?? "?"}/${doc.name ?? "?"}: ${text}`;
    if (!problems.includes(line))
        problems.push(line);
}

// --- reading -------------------------------------------------------------

function manifestFiles(paths) {
    const files = [];
    for (const path of paths) {
        if (statSync(path).isDirectory()) {
            for (const entry of readdirSync(path).sort())
                if (/\.(ya?ml|json)$/.test(entry))
                    files.push(join(path, entry));
        } else {
            files.push(path);
        }
    }
    return files;
}

// Kubernetes reads manifests as YAML 1.1 (sigs.k8s.io/yaml): 0440 is
// octal, yes/no/on/off are booleans. So do we, or a mode or an env value
// would be checked as something the cluster never sees.
export const YAML_OPTIONS = { version: "1.1", uniqueKeys: true, prettyErrors: true };

function readDocuments(file) {
    const text = readFileSync(file, "utf8");
    for (const parsed of parseAllDocuments(text, YAML_OPTIONS)) {
        for (const error of [...parsed.errors, ...parsed.warnings])
            problems.push(`${file}: YAML: ${error.message.split("\n")[0]}`);
        if (parsed.errors.length)
            continue;
        const object = parsed.toJS({ maxAliasCount: 0 });
        if (object === null || object === undefined)
            continue;
        docs.push({ file: basename(file), object, kind: object.kind,
                    name: object.metadata?.name });
    }
}

// --- 1, 2: the schema ----------------------------------------------------

// The oldest Kubernetes these manifests are for: autoscaling/v2 (1.23),
// policy/v1 (1.21) and the StatefulSet's persistentVolumeClaimRetentionPolicy
// (beta, on by default, since 1.27) are used.
const OLDEST = "1.27";

// API versions removed by then (Kubernetes' deprecated API migration guide).
// The schemas' package keeps old versions beside new ones, so their presence
// there says nothing; "group/version" covers every kind of it, else the
// entry is "group/version kind".
const REMOVED = {
    "extensions/v1beta1": "1.22", "apps/v1beta1": "1.16", "apps/v1beta2": "1.16",
    "networking.k8s.io/v1beta1": "1.22", "rbac.authorization.k8s.io/v1beta1": "1.22",
    "apiextensions.k8s.io/v1beta1": "1.22", "apiregistration.k8s.io/v1beta1": "1.22",
    "certificates.k8s.io/v1beta1": "1.22", "coordination.k8s.io/v1beta1": "1.22",
    "scheduling.k8s.io/v1beta1": "1.22", "policy/v1beta1": "1.25", "batch/v1beta1": "1.25",
    "autoscaling/v2beta1": "1.25", "autoscaling/v2beta2": "1.26", "discovery.k8s.io/v1beta1": "1.25",
    "events.k8s.io/v1beta1": "1.25", "node.k8s.io/v1beta1": "1.25",
    "flowcontrol.apiserver.k8s.io/v1beta1": "1.26", "flowcontrol.apiserver.k8s.io/v1beta2": "1.29",
    "admissionregistration.k8s.io/v1beta1 MutatingWebhookConfiguration": "1.22",
    "admissionregistration.k8s.io/v1beta1 ValidatingWebhookConfiguration": "1.22",
    "storage.k8s.io/v1beta1 CSIDriver": "1.22", "storage.k8s.io/v1beta1 CSINode": "1.22",
    "storage.k8s.io/v1beta1 StorageClass": "1.22", "storage.k8s.io/v1beta1 VolumeAttachment": "1.22",
    "storage.k8s.io/v1beta1 CSIStorageCapacity": "1.27",
};

function removedIn(apiVersion, kind) {
    return REMOVED[`${apiVersion} ${kind}`] ?? REMOVED[apiVersion] ?? null;
}

// The model class of apiVersion/kind, or null.
function modelOf(apiVersion, kind) {
    if (typeof apiVersion !== "string" || typeof kind !== "string" || !/^[a-zA-Z0-9./]+$/.test(apiVersion))
        return null;
    try {
        const module = require(`kubernetes-models/${apiVersion}`);
        const model = module[kind];
        return typeof model === "function" && model.kind === kind ? model : null;
    } catch {
        return null;
    }
}

// The schema's first complaint about object, or null.
function schemaError(model, object) {
    try {
        new model(object).validate();
        return null;
    } catch (error) {
        return error.errors ?? [{ instancePath: "", message: error.message }];
    }
}

// A value no Kubernetes schema type accepts at a field that it names: not a
// string, number, boolean or object, and an array whose item is an array.
const PROBE = [[Symbol.for("jobgate-probe")]];

// Every field path of value (arrays entered, their items by index).
function* fieldPaths(value, path = []) {
    if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++)
            yield* fieldPaths(value[i], [...path, i]);
    } else if (value !== null && typeof value === "object") {
        for (const key of Object.keys(value)) {
            yield [...path, key];
            yield* fieldPaths(value[key], [...path, key]);
        }
    }
}

function withValueAt(object, path, replacement) {
    const copy = structuredClone(object);
    let node = copy;
    for (const step of path.slice(0, -1))
        node = node[step];
    node[path[path.length - 1]] = replacement;
    return copy;
}

function unknownFields(model, object) {
    const unknown = [];
    for (const path of fieldPaths(object)) {
        if (path.length === 1 && (path[0] === "apiVersion" || path[0] === "kind"))
            continue;
        // A field under one already refused is not looked at again.
        if (unknown.some((known) => known.every((step, i) => path[i] === step)))
            continue;
        const pointer = "/" + path.map((step) => String(step).replace(/~/g, "~0").replace(/\//g, "~1")).join("/");
        const errors = schemaError(model, withValueAt(object, path, PROBE)) ?? [];
        if (!errors.some((error) => error.instancePath === pointer || error.instancePath.startsWith(pointer + "/")))
            unknown.push(path);
    }
    return unknown.map((path) => path.join("."));
}

function checkSchema(doc) {
    const { object } = doc;
    const model = modelOf(object.apiVersion, object.kind);
    if (!model) {
        problem(doc, `apiVersion ${object.apiVersion} kind ${object.kind} is not in the Kubernetes API`);
        return;
    }
    const removed = removedIn(object.apiVersion, object.kind);
    if (removed) {
        problem(doc, `apiVersion ${object.apiVersion} kind ${object.kind} was removed in Kubernetes ${removed} (these manifests are for ${OLDEST} and later)`);
        return;
    }
    const errors = schemaError(model, object);
    if (errors) {
        for (const error of errors.slice(0, 5))
            problem(doc, `schema: ${error.instancePath || "/"} ${error.message}` +
                    (error.params?.missingProperty ? ` (${error.params.missingProperty})` : ""));
        return;
    }
    for (const field of unknownFields(model, object))
        problem(doc, `unknown field ${field}`);
}

// --- 3: what the apiserver refuses beyond the schema ------------------------

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const IANA_SVC_NAME = /^(?=.*[a-z])[a-z0-9]([a-z0-9]|-(?=[a-z0-9]))*$/;

function checkLabels(doc, labels, where) {
    for (const [key, value] of Object.entries(labels ?? {})) {
        const [prefix, name] = key.includes("/") ? key.split("/", 2) : [null, key];
        if ((prefix !== null && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)))
            || name.length > 63 || !LABEL_NAME.test(name))
            problem(doc, `${where}: label key "${key}" is not valid`);
        if (typeof value !== "string" || value.length > 63 || (value !== "" && !LABEL_NAME.test(value)))
            problem(doc, `${where}: label value "${value}" of ${key} is not valid`);
    }
}

function podSpecOf(object) {
    if (["Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"].includes(object.kind))
        return object.spec?.template?.spec;
    return object.kind === "Pod" ? object.spec : null;
}

function podLabelsOf(object) {
    return object.kind === "Pod" ? object.metadata?.labels : object.spec?.template?.metadata?.labels;
}

function checkApiserverRules(doc) {
    const { object } = doc;
    const name = object.metadata?.name;
    const needsLabel = ["Service", "Namespace"].includes(object.kind);
    if (typeof name !== "string" || name.length > (needsLabel ? 63 : 253)
        || !(needsLabel ? DNS1123_LABEL : DNS1123_SUBDOMAIN).test(name))
        problem(doc, `metadata.name "${name}" is not a valid name`);
    checkLabels(doc, object.metadata?.labels, "metadata.labels");
    checkLabels(doc, podLabelsOf(object), "pod labels");
    const ports = [];
    const pod = podSpecOf(object);
    for (const container of [...(pod?.initContainers ?? []), ...(pod?.containers ?? [])])
        for (const port of container.ports ?? [])
            ports.push([`container ${container.name} port`, port.containerPort, port.name]);
    for (const port of object.kind === "Service" ? object.spec?.ports ?? [] : [])
        ports.push(["service port", port.port, port.name]);
    for (const [what, number, portName] of ports) {
        if (!Number.isInteger(number) || number < 1 || number > 65535)
            problem(doc, `${what} ${number} is not from 1 to 65535`);
        if (portName !== undefined && (portName.length > 15 || !IANA_SVC_NAME.test(portName)))
            problem(doc, `${what} name "${portName}" is not an IANA service name (≤ 15 characters)`);
    }
}

// --- 4: references between objects ------------------------------------------

function find(kind, name) {
    return docs.find((doc) => doc.kind === kind && doc.name === name);
}

function workloads() {
    return docs.filter((doc) => podSpecOf(doc.object));
}

// Whether labels satisfy selector (matchLabels and matchExpressions, or a
// plain map as Services write it).
function selects(selector, labels) {
    labels = labels ?? {};
    const matchLabels = selector?.matchLabels ?? (selector?.matchExpressions ? {} : selector ?? {});
    for (const [key, value] of Object.entries(matchLabels))
        if (labels[key] !== value)
            return false;
    for (const expression of selector?.matchExpressions ?? []) {
        const has = Object.hasOwn(labels, expression.key);
        const inValues = has && (expression.values ?? []).includes(labels[expression.key]);
        const ok = { In: inValues, NotIn: !inValues, Exists: has, DoesNotExist: !has }[expression.operator];
        if (!ok)
            return false;
    }
    return true;
}

function selectedWorkloads(selector) {
    return workloads().filter((doc) => selects(selector, podLabelsOf(doc.object)));
}

function containerPorts(podSpec) {
    return (podSpec?.containers ?? []).flatMap((container) => container.ports ?? []);
}

// The Secret or ConfigMap keys a volume provides, by name; null when it
// names an object that is not among the manifests (reported).
function volumeKeys(doc, volume) {
    const sources = volume.projected
        ? volume.projected.sources ?? []
        : volume.secret ? [{ secret: { name: volume.secret.secretName, items: volume.secret.items } }]
        : volume.configMap ? [{ configMap: volume.configMap }] : null;
    if (!sources)
        return null;
    const keys = new Set();
    for (const source of sources) {
        const [kind, ref] = source.secret ? ["Secret", source.secret]
            : source.configMap ? ["ConfigMap", source.configMap] : [null, null];
        if (!kind)
            continue;
        const target = find(kind, ref.name);
        if (!target) {
            if (!ref.optional)
                problem(doc, `volume ${volume.name}: ${kind} ${ref.name} is not defined`);
            continue;
        }
        const own = Object.keys({ ...target.object.data, ...target.object.stringData,
                                  ...target.object.binaryData });
        for (const item of ref.items ?? own.map((key) => ({ key, path: key }))) {
            if (!own.includes(item.key))
                problem(doc, `volume ${volume.name}: ${kind} ${ref.name} has no key ${item.key}`);
            keys.add(item.path);
        }
    }
    return keys;
}

function checkWorkload(doc) {
    const { object } = doc;
    const pod = podSpecOf(object);
    const labels = podLabelsOf(object);
    if (object.spec?.selector && !selects(object.spec.selector, labels))
        problem(doc, "spec.selector does not select the pod template's labels");
    const volumes = new Map((pod.volumes ?? []).map((volume) => [volume.name, volume]));
    const claims = new Set((object.spec?.volumeClaimTemplates ?? []).map((claim) => claim.metadata?.name));
    const mounted = new Set();
    for (const container of [...(pod.initContainers ?? []), ...(pod.containers ?? [])]) {
        const named = new Set((container.ports ?? []).map((port) => port.name).filter(Boolean));
        for (const probeName of ["startupProbe", "readinessProbe", "livenessProbe"]) {
            const probe = container[probeName];
            const port = probe?.httpGet?.port ?? probe?.tcpSocket?.port ?? probe?.grpc?.port;
            if (typeof port === "string" && !named.has(port))
                problem(doc, `container ${container.name}: ${probeName} names port ${port}, which it does not declare`);
        }
        for (const mount of container.volumeMounts ?? []) {
            mounted.add(mount.name);
            if (!volumes.has(mount.name) && !claims.has(mount.name))
                problem(doc, `container ${container.name}: volumeMount ${mount.name} has no volume`);
        }
        for (const from of container.envFrom ?? []) {
            const [kind, ref] = from.secretRef ? ["Secret", from.secretRef] : ["ConfigMap", from.configMapRef];
            if (ref && !ref.optional && !find(kind, ref.name))
                problem(doc, `container ${container.name}: envFrom ${kind} ${ref.name} is not defined`);
        }
        for (const env of container.env ?? []) {
            const ref = env.valueFrom?.secretKeyRef ?? env.valueFrom?.configMapKeyRef;
            const kind = env.valueFrom?.secretKeyRef ? "Secret" : "ConfigMap";
            if (ref && !ref.optional && !find(kind, ref.name))
                problem(doc, `container ${container.name}: env ${env.name}: ${kind} ${ref.name} is not defined`);
        }
    }
    for (const volume of volumes.values()) {
        if (!mounted.has(volume.name))
            problem(doc, `volume ${volume.name} is mounted by no container`);
        volumeKeys(doc, volume);
    }
    if (object.kind === "StatefulSet") {
        const governing = find("Service", object.spec.serviceName);
        if (!governing || governing.object.spec?.clusterIP !== "None")
            problem(doc, `spec.serviceName ${object.spec.serviceName} is not a headless Service`);
        else if (!selects(governing.object.spec.selector, labels))
            problem(doc, `its headless Service ${governing.name} does not select its pods`);
    }
}

function checkService(doc) {
    const spec = doc.object.spec ?? {};
    if (!spec.selector)
        return;
    const selected = selectedWorkloads(spec.selector);
    if (selected.length === 0) {
        problem(doc, "spec.selector selects no pods of these manifests");
        return;
    }
    for (const port of spec.ports ?? []) {
        const target = port.targetPort ?? port.port;
        for (const workload of selected) {
            const ports = containerPorts(podSpecOf(workload.object));
            const found = typeof target === "string"
                ? ports.some((p) => p.name === target) : ports.some((p) => p.containerPort === target);
            if (!found)
                problem(doc, `port ${port.name ?? port.port}: targetPort ${target} is not a port of ${workload.kind}/${workload.name}`);
        }
    }
}

function checkAutoscaler(doc) {
    const ref = doc.object.spec?.scaleTargetRef ?? {};
    const target = find(ref.kind, ref.name);
    if (!target || target.object.apiVersion !== ref.apiVersion) {
        problem(doc, `scaleTargetRef ${ref.apiVersion} ${ref.kind}/${ref.name} is not defined`);
        return;
    }
    for (const metric of doc.object.spec?.metrics ?? []) {
        if (metric.type !== "Resource" || metric.resource?.target?.type !== "Utilization")
            continue;
        for (const container of podSpecOf(target.object)?.containers ?? [])
            if (!container.resources?.requests?.[metric.resource.name])
                problem(doc, `utilization of ${metric.resource.name}: container ${container.name} of ${target.name} requests none, so the HPA cannot compute it`);
    }
}

// Each External metric an HPA scales on must be one the adapter serves
// (rules.external[].name.as of prometheus-adapter's values).
function checkExternalMetrics(adapterValues) {
    const values = parseAllDocuments(readFileSync(adapterValues, "utf8"), YAML_OPTIONS)[0].toJS();
    const served = new Set((values?.rules?.external ?? []).map((rule) => rule?.name?.as).filter(Boolean));
    for (const doc of docs.filter((d) => d.kind === "HorizontalPodAutoscaler"))
        for (const metric of doc.object.spec?.metrics ?? [])
            if (metric.type === "External" && !served.has(metric.external?.metric?.name))
                problem(doc, `external metric ${metric.external?.metric?.name} is not served by the adapter (${basename(adapterValues)})`);
}

function checkDisruptionBudget(doc) {
    if (selectedWorkloads(doc.object.spec?.selector).length === 0)
        problem(doc, "spec.selector selects no pods of these manifests");
}

// The ports a peer's rule may reach on the pods it protects must exist there.
function checkNetworkPolicy(doc) {
    const spec = doc.object.spec ?? {};
    const protectedPods = selectedWorkloads(spec.podSelector);
    if (protectedPods.length === 0)
        problem(doc, "spec.podSelector selects no pods of these manifests");
    const portsOf = (workload) => containerPorts(podSpecOf(workload.object));
    const hasPort = (workload, port) => portsOf(workload).some((p) =>
        typeof port.port === "string" ? p.name === port.port : p.containerPort === port.port);
    for (const [direction, rules] of [["ingress", spec.ingress ?? []], ["egress", spec.egress ?? []]]) {
        for (const [index, rule] of rules.entries()) {
            const peers = direction === "ingress" ? rule.from ?? [] : rule.to ?? [];
            for (const peer of peers) {
                // A podSelector alone means pods of this namespace: they must exist.
                if (peer.podSelector && !peer.namespaceSelector
                    && selectedWorkloads(peer.podSelector).length === 0)
                    problem(doc, `${direction}[${index}]: a podSelector selects no pods of these manifests`);
            }
            const targets = direction === "ingress" ? protectedPods
                : peers.filter((peer) => peer.podSelector && !peer.namespaceSelector)
                    .flatMap((peer) => selectedWorkloads(peer.podSelector));
            for (const port of rule.ports ?? [])
                for (const workload of targets)
                    if (!hasPort(workload, port))
                        problem(doc, `${direction}[${index}]: port ${port.port} is not a port of ${workload.kind}/${workload.name}`);
        }
    }
}

// --- 5: jobgate's config and the files it names ----------------------------

// Which processes read a file key of config.json (all three for CURVE).
const FILE_KEYS = [
    { path: ["security", "curve", "public_key_file"], roles: ["broker", "gateway", "worker"] },
    { path: ["security", "curve", "secret_key_file"], roles: ["broker", "gateway", "worker"] },
    { path: ["security", "curve", "broker_public_key_file"], roles: ["gateway", "worker"] },
    { path: ["security", "curve", "authorized_keys_file"], roles: ["broker"] },
    { path: ["gateway", "api_keys_file"], roles: ["gateway"] },
];

function roleOf(container) {
    const binary = basename(String(container.command?.[0] ?? ""));
    const match = /^jobgate-(broker|gateway|worker)$/.exec(binary);
    return match ? match[1] : null;
}

// Kubernetes gives every container NAME_SERVICE_HOST, NAME_PORT, … for each
// Service of its namespace unless the pod sets enableServiceLinks: false.
// For the Services jobgate-broker and jobgate-gateway those are
// JOBGATE_BROKER_PORT and the like, which every jobgate binary refuses as
// misspelt config overrides: the pod would never start.
function checkServiceLinks(doc) {
    const pod = podSpecOf(doc.object);
    const runsJobgate = (pod.containers ?? []).some((container) => roleOf(container));
    if (runsJobgate && pod.enableServiceLinks !== false)
        problem(doc, "enableServiceLinks must be false: Kubernetes would set JOBGATE_BROKER_PORT and the like for the jobgate-* Services, which jobgate refuses as unknown config overrides (the pod would crash-loop)");
}

// Secret and projected volumes are files owned by root (group: the pod's
// fsGroup) with the volume's mode (0644 unless defaultMode says): a
// non-root container reads them only through the other bits, or the group
// bits with an fsGroup.
function checkSecretFilesReadable(doc) {
    const pod = podSpecOf(doc.object);
    const podContext = pod.securityContext ?? {};
    for (const container of pod.containers ?? []) {
        const user = container.securityContext?.runAsUser ?? podContext.runAsUser;
        if (!roleOf(container) || user === 0 || user === undefined)
            continue;
        for (const mount of container.volumeMounts ?? []) {
            const volume = (pod.volumes ?? []).find((v) => v.name === mount.name);
            const source = volume?.secret ?? volume?.projected;
            if (!source)
                continue;
            const mode = source.defaultMode ?? 0o644;
            const readable = (mode & 0o004) || ((mode & 0o040) && podContext.fsGroup !== undefined);
            if (!readable)
                problem(doc, `container ${container.name} (uid ${user}) cannot read the files of volume ${volume.name} (mode 0${mode.toString(8)}, ${podContext.fsGroup === undefined ? "no fsGroup" : "fsGroup " + podContext.fsGroup})`);
        }
    }
}

function checkJobgateConfig() {
    for (const doc of docs.filter((d) => d.kind === "ConfigMap" && d.object.data?.["config.json"])) {
        let config;
        try {
            config = JSON.parse(doc.object.data["config.json"]);
        } catch (error) {
            problem(doc, `config.json is not JSON: ${error.message}`);
            continue;
        }
        for (const workload of workloads()) {
            const pod = podSpecOf(workload.object);
            const volumes = new Map((pod.volumes ?? []).map((volume) => [volume.name, volume]));
            const usesConfig = [...volumes.values()].some((volume) => volume.configMap?.name === doc.name);
            if (!usesConfig)
                continue;
            for (const container of pod.containers ?? []) {
                const role = roleOf(container);
                if (!role)
                    continue;
                for (const fileKey of FILE_KEYS) {
                    const file = fileKey.path.reduce((node, step) => node?.[step], config);
                    if (typeof file !== "string" || !fileKey.roles.includes(role))
                        continue;
                    const mount = (container.volumeMounts ?? []).find((m) =>
                        file.startsWith(m.mountPath.replace(/\/?$/, "/")));
                    const keys = mount && volumes.has(mount.name)
                        ? volumeKeys(workload, volumes.get(mount.name)) : null;
                    const relative = mount ? file.slice(mount.mountPath.replace(/\/?$/, "/").length) : null;
                    if (!keys || !keys.has(relative))
                        problem(workload, `container ${container.name} (${role}) reads ${fileKey.path.join(".")} = ${file}, which no mounted Secret provides`);
                }
            }
        }
    }
}

// --- main ------------------------------------------------------------------

// validate checks the manifests in paths (files, or directories of *.yaml,
// *.yml, *.json) together; returns the problems found (lines) and a summary.
export function validate(paths, adapterValues = null) {
    problems = [];
    docs = [];
    for (const file of manifestFiles(paths))
        readDocuments(file);
    const seen = new Set();
    for (const doc of docs) {
        const key = `${doc.kind}/${doc.name}`;
        if (seen.has(key))
            problem(doc, "defined twice");
        seen.add(key);
    }
    for (const doc of docs) {
        const before = problems.length;
        checkSchema(doc);
        if (problems.length > before)
            continue;   // references of an object the cluster refuses are moot
        checkApiserverRules(doc);
        if (podSpecOf(doc.object)) {
            checkWorkload(doc);
            checkServiceLinks(doc);
            checkSecretFilesReadable(doc);
        }
        if (doc.kind === "Service")
            checkService(doc);
        if (doc.kind === "HorizontalPodAutoscaler")
            checkAutoscaler(doc);
        if (doc.kind === "PodDisruptionBudget")
            checkDisruptionBudget(doc);
        if (doc.kind === "NetworkPolicy")
            checkNetworkPolicy(doc);
    }
    checkJobgateConfig();
    if (adapterValues)
        checkExternalMetrics(adapterValues);
    const kinds = {};
    for (const doc of docs)
        kinds[doc.kind] = (kinds[doc.kind] ?? 0) + 1;
    const summary = `${docs.length} objects (${Object.entries(kinds).map(([k, n]) => `${n} ${k}`).join(", ")}), ` +
        `${problems.length} problem${problems.length === 1 ? "" : "s"}`;
    return { problems, summary };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
    const args = process.argv.slice(2);
    const at = args.indexOf("--adapter");
    const adapterValues = at >= 0 ? args.splice(at, 2)[1] : null;
    if (args.length === 0 || (at >= 0 && !adapterValues)) {
        console.error("usage: validate.mjs [--adapter PROMETHEUS_ADAPTER_VALUES] FILE_OR_DIR…");
        process.exit(2);
    }
    const result = validate(args, adapterValues);
    for (const line of result.problems)
        console.log(line);
    console.log(`validate: ${result.summary}`);
    process.exit(result.problems.length ? 1 : 0);
}
