// Validates every object of the YAML files in a directory (deploy/k8s) against Kubernetes' own
// OpenAPI schemas (kubernetes-models) and prometheus-operator's CRD schemas
// (@kubernetes-models/prometheus-operator); a kustomization's resources must all exist. Run by
// scripts/check.sh deploy: `node check.mjs <dir>`.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';

const dir = resolve(process.argv[2] ?? '../../deploy/k8s');

/** The model class of an object, from its apiVersion and kind. */
async function modelOf(apiVersion, kind) {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const path =
    group === 'monitoring.coreos.com'
      ? `@kubernetes-models/prometheus-operator/${group}/${version}/${kind}`
      : group === ''
        ? `kubernetes-models/${version}/${kind}`
        : `kubernetes-models/${group}/${version}/${kind}`;
  const module = await import(path);
  return module[kind];
}

let objects = 0;
let errors = 0;
const fail = (where, message) => {
  errors += 1;
  console.error(`${where}: ${message}`);
};
for (const file of readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort()) {
  const docs = parseAllDocuments(readFileSync(join(dir, file), 'utf8'));
  for (const [i, doc] of docs.entries()) {
    const where = `${file} #${i + 1}`;
    if (doc.errors.length > 0) {
      fail(where, doc.errors.map((e) => e.message).join('; '));
      continue;
    }
    const obj = doc.toJS();
    if (obj === null) continue;
    if (obj.kind === 'Kustomization') {
      for (const r of obj.resources ?? []) {
        if (!existsSync(join(dir, r))) fail(where, `resource ${r} does not exist`);
      }
      objects += 1;
      continue;
    }
    let Model;
    try {
      Model = await modelOf(obj.apiVersion, obj.kind);
    } catch (e) {
      fail(where, `no schema for ${obj.apiVersion} ${obj.kind}`);
      continue;
    }
    try {
      new Model(obj).validate();
      objects += 1;
    } catch (e) {
      fail(`${where} ${obj.kind}/${obj.metadata?.name}`, e.message);
    }
  }
}
if (errors > 0) {
  console.error(`deploy schema: ${errors} error(s)`);
  process.exit(1);
}
console.log(`deploy schema: ${objects} objects valid`);
