/**
 * Builds the package (`npm run build`; `prepare` runs it before `npm pack`, `npm publish` and git
 * installs):
 *
 *   dist/      CommonJS + .d.ts (tsconfig.build.json, type-checked); the bins run from here.
 *   dist/esm/  ES modules + .d.ts (tsconfig.esm.json) in a {"type":"module"} folder, importing
 *              Kysely's ESM build, so an ESM app loads one copy of Kysely and its types line up.
 *
 * The sources compile file by file (`isolatedModules`), so the ESM files are transpiled in this
 * process while tsc type-checks and emits the CommonJS build; the declarations do not depend on
 * the module format, so dist/esm takes the CommonJS build's. One type-check instead of two halves
 * the build time.
 *
 * Node's ESM loader needs full relative specifiers (`./topology.js`), while the sources import
 * `./topology`: this script rewrites the relative specifiers of dist/esm (found with the
 * TypeScript parser, not a regex) and fails the build on any it cannot resolve. It also gives
 * ES modules that call `require` (a lazily loaded CommonJS driver) a `require` of their own.
 */
import { spawn } from 'node:child_process';
import { chmod, copyFile, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const requireHere = createRequire(import.meta.url);
const ts = requireHere('typescript');
const dist = join(root, 'dist');
const esm = join(dist, 'esm');

function tsc(project) {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, [requireHere.resolve('typescript/bin/tsc'), '-p', project], { cwd: root, stdio: 'inherit' });
    child.on('error', fail);
    child.on('exit', (code) => (code === 0 ? done() : fail(new Error(`tsc -p ${project} failed (exit ${code})`))));
  });
}

async function filesUnder(folder) {
  const entries = await readdir(folder, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name));
}

async function exists(path) {
  return stat(path).then((s) => s.isFile(), () => false);
}

/** String literals naming modules: import/export declarations, import() calls, import("…") types. */
function moduleSpecifiers(sourceFile) {
  const found = [];
  const visit = (node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && node.arguments[0] && ts.isStringLiteral(node.arguments[0])) {
      found.push(node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal);
    }
    ts.forEachChild(node, visit);
  };
  visit(sourceFile);
  return found;
}

function callsRequire(sourceFile) {
  let calls = false;
  const visit = (node) => {
    if (ts.isCallExpression(node) && ts.isIdentifier(node.expression) && node.expression.text === 'require') calls = true;
    else if (!calls) ts.forEachChild(node, visit);
  };
  visit(sourceFile);
  return calls;
}

const CJS_GLOBALS = /\b(__dirname|__filename|module\.exports)\b/;
const REQUIRE_SHIM = "import { createRequire as __kyselyScaleCreateRequire } from 'node:module';\nconst require = __kyselyScaleCreateRequire(import.meta.url);\n";

/** Rewrites one dist/esm file; returns the problems found. */
async function fixEsmFile(file) {
  const declaration = file.endsWith('.d.ts');
  const ext = declaration ? '.d.ts' : '.js';
  const text = await readFile(file, 'utf8');
  const sourceFile = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, declaration ? ts.ScriptKind.TS : ts.ScriptKind.JS);
  const problems = [];
  const edits = [];
  for (const literal of moduleSpecifiers(sourceFile)) {
    const spec = literal.text;
    if (!spec.startsWith('./') && !spec.startsWith('../')) continue;
    if (/\.(m|c)?js$|\.json$/.test(spec)) continue;
    const base = resolve(dirname(file), spec);
    let fixed;
    if (await exists(base + ext)) fixed = `${spec}.js`;
    else if (await exists(join(base, `index${ext}`))) fixed = `${spec}/index.js`;
    else {
      problems.push(`${relative(root, file)}: cannot resolve "${spec}"`);
      continue;
    }
    edits.push({ start: literal.getStart(sourceFile) + 1, end: literal.getEnd() - 1, text: fixed });
  }
  let out = text;
  for (const edit of edits.sort((a, b) => b.start - a.start)) out = out.slice(0, edit.start) + edit.text + out.slice(edit.end);
  if (!declaration) {
    const code = out.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    if (CJS_GLOBALS.test(code)) problems.push(`${relative(root, file)}: uses ${code.match(CJS_GLOBALS)[0]}, which ES modules do not have`);
    if (callsRequire(sourceFile)) out = REQUIRE_SHIM + out;
  }
  if (out !== text) await writeFile(file, out);
  return problems;
}

/** Every file the package.json points at (exports, typesVersions, bin, main, types) must exist. */
async function checkPackagePaths(pkg) {
  const targets = [pkg.main, pkg.module, pkg.types, ...Object.values(pkg.bin ?? {})];
  const collect = (value) => {
    if (typeof value === 'string') targets.push(value);
    else if (value && typeof value === 'object') Object.values(value).forEach(collect);
  };
  collect(pkg.exports);
  collect(pkg.typesVersions);
  const missing = [];
  for (const target of targets.filter((t) => typeof t === 'string')) if (!(await exists(join(root, target)))) missing.push(target);
  return missing.map((m) => `package.json points at ${m}, which the build did not produce`);
}

/** Transpiles every file of tsconfig.esm.json to dist/esm; returns the source files. */
async function transpileEsm() {
  const config = ts.getParsedCommandLineOfConfigFile(join(root, 'tsconfig.esm.json'), {}, { ...ts.sys, onUnRecoverableConfigFileDiagnostic: (d) => { throw new Error(ts.flattenDiagnosticMessageText(d.messageText, '\n')); } });
  if (config.errors.length > 0) throw new Error(config.errors.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('\n'));
  const { options } = config;
  const sources = config.fileNames.filter((f) => !f.endsWith('.d.ts'));
  for (const source of sources) {
    const output = ts.transpileModule(await readFile(source, 'utf8'), {
      fileName: source,
      compilerOptions: { ...options, declaration: false, sourceMap: false, noEmit: false },
      reportDiagnostics: true,
    });
    if (output.diagnostics?.length) throw new Error(`${relative(root, source)}: ${output.diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')).join('; ')}`);
    const target = join(esm, relative(options.rootDir, source)).replace(/\.ts$/, '.js');
    await mkdir(dirname(target), { recursive: true });
    await writeFile(target, output.outputText);
  }
  return sources.map((source) => relative(options.rootDir, source));
}

async function main() {
  const started = Date.now();
  await rm(dist, { recursive: true, force: true });
  const [, esmSources] = await Promise.all([tsc('tsconfig.build.json'), transpileEsm()]);
  for (const source of esmSources) {
    const declaration = source.replace(/\.ts$/, '.d.ts');
    await copyFile(join(dist, declaration), join(esm, declaration));
  }
  await writeFile(join(esm, 'package.json'), `${JSON.stringify({ type: 'module' })}\n`);
  const problems = [];
  for (const file of await filesUnder(esm)) if (file.endsWith('.js') || file.endsWith('.d.ts')) problems.push(...(await fixEsmFile(file)));
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8'));
  for (const bin of Object.values(pkg.bin ?? {})) {
    const path = join(root, bin);
    if (!(await exists(path))) continue; // reported below
    if (!(await readFile(path, 'utf8')).startsWith('#!/usr/bin/env node\n')) problems.push(`${bin}: a bin must start with #!/usr/bin/env node`);
    await chmod(path, 0o755);
  }
  problems.push(...(await checkPackagePaths(pkg)));
  if (problems.length > 0) throw new Error(`The build is not usable:\n  ${problems.join('\n  ')}`);
  process.stdout.write(`Built dist/ (CommonJS) and dist/esm/ (ES modules) in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
}

main().catch((error) => {
  process.stderr.write(`${error.message}\n`);
  process.exit(1);
});
