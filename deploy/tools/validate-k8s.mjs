#!/usr/bin/env node
// Validates Kubernetes objects (a multi-document YAML stream, e.g. `helm template`
// output) against the Kubernetes API schema for each object's apiVersion and kind,
// offline. kubectl can't do this without an API server; the npm package
// kubernetes-models carries the OpenAPI schemas compiled into validators (types,
// enums, required fields, formats). Those validators let unknown fields through, so
// this also rejects any field the API type does not declare (a misspelt
// `readOnlyRootFileSystem` would otherwise be dropped silently by the API server),
// using the type declarations shipped with the same package.
//
// Usage: validate-k8s.mjs [--json] [FILE|-]
//   Prints one line per invalid object and exits 1 if any; with --json, prints the
//   parsed objects as a JSON array on stdout when all are valid.
// Finds its packages in $CRYPTNONO_DEPLOY_TOOLS (default /opt/cryptnono-deploy-tools),
// installed by scripts/install-deploy-deps.sh.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";

const toolsDir = process.env.CRYPTNONO_DEPLOY_TOOLS || "/opt/cryptnono-deploy-tools";
const modules = path.join(toolsDir, "node_modules");
const require = createRequire(path.join(toolsDir, "package.json"));

// apiVersion -> directory (below node_modules) holding the models of that group/version.
const groupDirs = {
  "v1": "kubernetes-models/v1",
  "apps/v1": "kubernetes-models/apps/v1",
  "batch/v1": "kubernetes-models/batch/v1",
  "policy/v1": "kubernetes-models/policy/v1",
  "rbac.authorization.k8s.io/v1": "kubernetes-models/rbac.authorization.k8s.io/v1",
  "networking.k8s.io/v1": "kubernetes-models/networking.k8s.io/v1",
  "scheduling.k8s.io/v1": "kubernetes-models/scheduling.k8s.io/v1",
  "monitoring.coreos.com/v1": "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1",
};

// ---- Field checking from the TypeScript declarations ------------------------------

const declCache = new Map();

function splitTopLevel(text, sep) {
  const out = [];
  let depth = 0, start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "<" || c === "{" || c === "(" || c === "[") depth++;
    else if (c === ">" || c === "}" || c === ")" || c === "]") depth--;
    else if (c === sep && depth === 0) { out.push(text.slice(start, i)); start = i + 1; }
  }
  out.push(text.slice(start));
  return out;
}

// Resolves an import specifier of a declaration file to another declaration file.
function resolveDecl(fromFile, spec) {
  const base = spec.startsWith(".") ? path.resolve(path.dirname(fromFile), spec) : path.join(modules, spec);
  const file = base.replace(/\.js$/, "") + ".d.ts";
  return fs.existsSync(file) ? file : null;
}

// Parses the first exported interface of a declaration file into
// {props: Map(name -> typeText), imports: Map(identifier -> file)}, or null when the
// file declares no interface (a type alias such as IntOrString or Quantity: a leaf).
function loadDecl(file) {
  if (declCache.has(file)) return declCache.get(file);
  const src = fs.readFileSync(file, "utf8").replace(/\/\*[\s\S]*?\*\//g, "");
  const imports = new Map();
  for (const m of src.matchAll(/import\s*\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    const target = resolveDecl(file, m[2]);
    for (const name of m[1].split(",").map((s) => s.trim()).filter(Boolean)) {
      if (target) imports.set(name.replace(/^type\s+/, ""), target);
    }
  }
  const head = /export interface (\w+)(?: extends ([\w,\s]+))?\s*\{/.exec(src);
  let decl = null;
  if (head) {
    // The interface body: up to the brace that closes the opening one.
    let depth = 1, i = head.index + head[0].length;
    const bodyStart = i;
    for (; i < src.length && depth > 0; i++) {
      if (src[i] === "{") depth++;
      else if (src[i] === "}") depth--;
    }
    const body = src.slice(bodyStart, i - 1);
    const props = new Map();
    for (const member of splitTopLevel(body, ";")) {
      const m = /^\s*"([^"]+)"\??\s*:\s*([\s\S]+?)\s*$/.exec(member);
      if (m) props.set(m[1], m[2]);
    }
    const bases = (head[2] || "").split(",").map((s) => s.trim()).filter(Boolean);
    if (bases.includes("TypeMeta")) {
      props.set("apiVersion", "string");
      props.set("kind", "string");
    }
    decl = { props, imports };
  }
  declCache.set(file, decl);
  return decl;
}

// typeText -> {kind: "leaf"} | {kind: "ref", file} | {kind: "array", of} | {kind: "map", of}
function parseType(text, imports) {
  const t = text.trim();
  let m;
  if ((m = /^Array<([\s\S]+)>$/.exec(t))) return { kind: "array", of: parseType(m[1], imports) };
  if ((m = /^\{\s*\[key: string\]:\s*([\s\S]+?);?\s*\}$/.exec(t))) return { kind: "map", of: parseType(m[1], imports) };
  if (/^\w+$/.test(t) && imports.has(t)) return { kind: "ref", file: imports.get(t) };
  return { kind: "leaf" };
}

function isObject(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

function checkFields(value, type, where, errors) {
  if (type.kind === "array") {
    if (Array.isArray(value)) value.forEach((v, i) => checkFields(v, type.of, `${where}[${i}]`, errors));
  } else if (type.kind === "map") {
    if (isObject(value)) for (const [k, v] of Object.entries(value)) checkFields(v, type.of, `${where}.${k}`, errors);
  } else if (type.kind === "ref") {
    const decl = loadDecl(type.file);
    // Type aliases are leaves; an interface with no declared fields is free-form (RawExtension, FieldsV1).
    if (!decl || decl.props.size === 0 || !isObject(value)) return;
    for (const [k, v] of Object.entries(value)) {
      if (!decl.props.has(k)) {
        errors.push(`${where}.${k}: unknown field (not in ${path.basename(type.file, ".d.ts")})`);
        continue;
      }
      checkFields(v, parseType(decl.props.get(k), decl.imports), `${where}.${k}`, errors);
    }
  }
}

// ---- Main --------------------------------------------------------------------------

async function validateObject(obj) {
  const name = `${obj?.kind ?? "?"}/${obj?.metadata?.name ?? "?"}`;
  if (!isObject(obj) || typeof obj.apiVersion !== "string" || typeof obj.kind !== "string") {
    return [`${name}: not a Kubernetes object (apiVersion and kind are required)`];
  }
  const dir = groupDirs[obj.apiVersion];
  const file = dir && path.join(modules, dir, `${obj.kind}.js`);
  if (!file || !fs.existsSync(file)) return [`${name}: unknown apiVersion/kind ${obj.apiVersion} ${obj.kind}`];
  const errors = [];
  const mod = await import(pathToFileURL(file).href);
  const Model = mod[obj.kind];
  try {
    new Model(obj).validate();
  } catch (e) {
    errors.push(`${name}: ${e.message}`);
  }
  checkFields(obj, { kind: "ref", file: file.replace(/\.js$/, ".d.ts") }, name, errors);
  if (!obj.metadata?.name) errors.push(`${name}: metadata.name is required`);
  return errors;
}

async function main() {
  const args = process.argv.slice(2);
  const json = args.includes("--json");
  const input = args.filter((a) => a !== "--json")[0] ?? "-";
  const text = fs.readFileSync(input === "-" ? 0 : input, "utf8");
  const yaml = require("js-yaml");
  const objects = yaml.loadAll(text).filter((d) => d !== null && d !== undefined);
  const errors = [];
  for (const obj of objects) errors.push(...(await validateObject(obj)));
  if (errors.length) {
    for (const e of errors) console.error(e);
    process.exit(1);
  }
  if (json) process.stdout.write(JSON.stringify(objects) + "\n");
  else console.error(`validate-k8s: ${objects.length} object(s) valid`);
}

main().catch((e) => {
  console.error(`validate-k8s: ${e.stack || e}`);
  process.exit(2);
});
