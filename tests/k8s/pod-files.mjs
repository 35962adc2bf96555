// pod-files.mjs WORK MANIFEST_DIR SECRETS_FILE ROLE — what a pod of ROLE
// (broker, gateway, worker) would find on its disk, for a binary run outside
// Kubernetes: WORK/config.json is the ConfigMap's config.json with
// /run/secrets/jobgate/ replaced by WORK/secrets/, and every Secret volume
// the ROLE's workload mounts below /run/secrets/jobgate/ is written there,
// key by key (mode 0600), as the kubelet would project it. WORK/env.json
// is the environment the container would get: its manifest's env, its
// envFrom Secrets, and — unless the pod sets enableServiceLinks: false — the
// variables Kubernetes adds for every Service of the namespace
// (NAME_SERVICE_HOST, NAME_PORT, …; addresses made up, never dialled).
import { readFileSync, writeFileSync, mkdirSync, rmSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { YAML_OPTIONS } from "./validate.mjs";

const [work, manifestDir, secretsFile, role] = process.argv.slice(2);
const files = [...readdirSync(manifestDir).filter((f) => /\.ya?ml$/.test(f)).map((f) => join(manifestDir, f)), secretsFile];
const docs = files.flatMap((f) => parseAllDocuments(readFileSync(f, "utf8"), YAML_OPTIONS).map((d) => d.toJS())).filter(Boolean);
const secret = (name) => docs.find((d) => d.kind === "Secret" && d.metadata.name === name);
const workload = docs.find((d) => d.spec?.template?.spec?.containers?.some((c) => c.command?.[0] === `jobgate-${role}`));
if (!workload)
    throw new Error(`no workload runs jobgate-${role}`);
const pod = workload.spec.template.spec;
const container = pod.containers.find((c) => c.command[0] === `jobgate-${role}`);
const configVolume = pod.volumes.find((v) => v.configMap);
const configMap = docs.find((d) => d.kind === "ConfigMap" && d.metadata.name === configVolume.configMap.name);
const root = "/run/secrets/jobgate/";
rmSync(join(work, "secrets"), { recursive: true, force: true });
writeFileSync(join(work, "config.json"), configMap.data["config.json"].replaceAll(root, `${work}/secrets/`));
const env = {};
for (const from of container.envFrom ?? [])
    Object.assign(env, secret(from.secretRef?.name)?.stringData ?? {});
for (const variable of container.env ?? [])
    if (variable.value !== undefined)
        env[variable.name] = variable.value;
if (pod.enableServiceLinks !== false) {
    for (const [index, service] of docs.filter((d) => d.kind === "Service").entries()) {
        const prefix = service.metadata.name.toUpperCase().replaceAll("-", "_");
        const address = service.spec.clusterIP === "None" ? "" : `10.96.0.${10 + index}`;
        if (!address)
            continue;
        const ports = service.spec.ports ?? [];
        env[`${prefix}_SERVICE_HOST`] = address;
        env[`${prefix}_SERVICE_PORT`] = String(ports[0]?.port ?? "");
        env[`${prefix}_PORT`] = `tcp://${address}:${ports[0]?.port}`;
        for (const port of ports) {
            const tcp = `${prefix}_PORT_${port.port}_TCP`;
            if (port.name)
                env[`${prefix}_SERVICE_PORT_${port.name.toUpperCase().replaceAll("-", "_")}`] = String(port.port);
            Object.assign(env, { [tcp]: `tcp://${address}:${port.port}`, [`${tcp}_PROTO`]: "tcp",
                                 [`${tcp}_PORT`]: String(port.port), [`${tcp}_ADDR`]: address });
        }
    }
}
writeFileSync(join(work, "env.json"), JSON.stringify(env, null, 1));
for (const mount of container.volumeMounts ?? []) {
    if (!mount.mountPath.startsWith(root))
        continue;
    const volume = pod.volumes.find((v) => v.name === mount.name);
    const sources = volume.projected?.sources?.map((s) => s.secret).filter(Boolean)
        ?? (volume.secret ? [{ name: volume.secret.secretName }] : []);
    const dir = join(work, "secrets", mount.mountPath.slice(root.length));
    mkdirSync(dir, { recursive: true });
    for (const source of sources)
        for (const [key, value] of Object.entries(secret(source.name)?.stringData ?? {}))
            writeFileSync(join(dir, key), value, { mode: 0o600 });
}
