// Type-checks every dashboard JSON in a directory against Grafana's own `Dashboard` type
// (@grafana/schema) with the TypeScript compiler: a misspelt field, a wrong type or a missing
// required one fails. Run by scripts/check.sh observability: `node check.mjs <dashboards dir>`.
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const ts = require('typescript');

const dir = resolve(process.argv[2] ?? '../../dashboards');
const dashboards = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();
if (dashboards.length === 0) {
  console.error(`no dashboard JSON in ${dir}`);
  process.exit(2);
}

// One module per dashboard: the JSON as a literal assigned to a `Dashboard`, so that excess and
// mistyped properties are reported where they are. Two things Grafana saves are not declared by
// the published type, and are allowed with their own types (nothing else is): a query variable's
// `definition` (the query as typed in its editor), and the fields of a Prometheus annotation query.
const HEADER = [
  "import type { AnnotationQuery, Dashboard, VariableModel } from '@grafana/schema';",
  'type SavedVariable = VariableModel & { definition?: string };',
  'type PrometheusAnnotation = AnnotationQuery & { expr?: string; step?: string; titleFormat?: string; textFormat?: string; tagKeys?: string; useValueForTime?: boolean };',
  "type SavedDashboard = Omit<Dashboard, 'templating' | 'annotations'> & { templating?: { list?: SavedVariable[] }; annotations?: { list?: PrometheusAnnotation[] } };",
];
const work = mkdtempSync(join(tmpdir(), 'dashboard-schema-'));
const sources = new Map();
const files = dashboards.map((name) => {
  const json = readFileSync(join(dir, name), 'utf8');
  JSON.parse(json); // a syntax error is reported as such, not as a type error
  const file = join(work, `${basename(name, '.json')}.ts`);
  writeFileSync(
    file,
    `${HEADER.join('\n')}\nexport const dashboard: SavedDashboard = ${json};\n`,
  );
  sources.set(file, name);
  return file;
});

const program = ts.createProgram(files, {
  strict: true,
  noEmit: true,
  skipLibCheck: true,
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  target: ts.ScriptTarget.ES2022,
  typeRoots: [],
  baseUrl: here,
  paths: { '@grafana/schema': [join(here, 'node_modules/@grafana/schema')] },
});
const diagnostics = ts.getPreEmitDiagnostics(program);
for (const d of diagnostics) {
  const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
  if (d.file && d.start !== undefined) {
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start);
    const name = sources.get(d.file.fileName) ?? basename(d.file.fileName);
    // The JSON starts on the line after the header.
    console.error(`${name}:${line + 1 - HEADER.length}:${character + 1}: ${message}`);
  } else {
    console.error(message);
  }
}
rmSync(work, { recursive: true, force: true });
if (diagnostics.length > 0) {
  console.error(`dashboard schema: ${diagnostics.length} error(s)`);
  process.exit(1);
}
console.log(`dashboard schema: ${dashboards.length} dashboards match @grafana/schema's Dashboard`);
