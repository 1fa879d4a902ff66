#!/usr/bin/env node
// A worked example of reading the fusion_spec conformance bundle without Python (Node >= 18, no deps).
//
//   node verify_case.mjs BUNDLE_DIR CASE_ID [OUTPUTS.safetensors]
//
// Loads manifest.json, checks format_version, finds the case, checks the case file's sha256, parses
// the safetensors file, and checks every tensor's shape against the manifest. Then either
//  - compares the output.<name> tensors of OUTPUTS.safetensors (another implementation's results)
//    with the reference, or
//  - recomputes the output itself for the cases this tiny implementation knows (ops `linear`,
//    spec `LinearProjection`, ops `merge_tokens` with mode "consecutive"), and compares.
// The reference for outputs in dtype T is the float64 result on the inputs rounded to T (the bundle
// format's rule): for float64 the golden outputs; for lower precisions it is recomputed here for the
// ops above, and for any other op the float64 goldens are used and the JSON line says so
// ("reference": "float64 goldens, unrounded inputs"; `fusion-spec goldens verify` recomputes it).
// Metric, with the case's tolerance {rtol, atol, norm} for the outputs' dtype, for every floating
// output o: elementwise max |got - want| / (atol + rtol * |want|), and normwise
// RMS(got_o - want_o) / (norm * max(RMS(want_o), S)) with S the RMS of all the case's floating
// reference outputs together; ratio = the worst of both; pass iff ratio <= 1. Prints one JSON line; exit status 0 pass, 1 fail, 2 error
// (unreadable bundle or outputs file, unknown case).
//
//   node verify_case.mjs BUNDLE_DIR CASE_ID --grad [GRADS.safetensors]
//
// The same for the backward pass: loads <id>.grad.safetensors (sha256, shapes), then compares the
// grad.input.<name> / grad.param.<name> tensors of GRADS.safetensors with the golden gradients, or
// recomputes the vector-Jacobian products for `linear`, `LinearProjection` and consecutive
// `merge_tokens` from the stored cotangent, with the case's gradient tolerance.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { join } from "node:path";

const FORMAT_VERSION = 3;

class BundleError extends Error {}

// --- safetensors -------------------------------------------------------------------------------------
const DTYPES = {
  F64: { size: 8, read: (v, o) => v.getFloat64(o, true) },
  F32: { size: 4, read: (v, o) => v.getFloat32(o, true) },
  F16: { size: 2, read: (v, o) => half(v.getUint16(o, true)) },
  BF16: { size: 2, read: (v, o) => bf16(v.getUint16(o, true)) },
  I64: { size: 8, read: (v, o) => Number(v.getBigInt64(o, true)) },
  I32: { size: 4, read: (v, o) => v.getInt32(o, true) },
  BOOL: { size: 1, read: (v, o) => v.getUint8(o) !== 0 },
};

function half(h) {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

function bf16(b) {
  const view = new DataView(new ArrayBuffer(4));
  view.setUint32(0, b << 16, false);
  return view.getFloat32(0, false);
}

// Returns {name: {dtype, shape, data: Array}}.
export function parseSafetensors(bytes, where) {
  if (bytes.length < 8) throw new BundleError(`${where}: not a safetensors file (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > bytes.length) throw new BundleError(`${where}: header of ${n} bytes does not fit (truncated?)`);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const base = 8 + n;
  const out = {};
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const dt = DTYPES[info.dtype];
    if (!dt) throw new BundleError(`${where}: tensor ${name} has unknown dtype ${info.dtype}`);
    const count = info.shape.reduce((a, b) => a * b, 1);
    const [begin, end] = info.data_offsets;
    if (end - begin !== count * dt.size || base + end > bytes.length)
      throw new BundleError(`${where}: tensor ${name} data_offsets [${begin}, ${end}] invalid (truncated?)`);
    const data = new Array(count);
    for (let i = 0; i < count; i++) data[i] = dt.read(view, base + begin + i * dt.size);
    out[name] = { dtype: info.dtype, shape: info.shape, data };
  }
  return out;
}

// --- the bundle --------------------------------------------------------------------------------------
function readFile(path, what) {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new BundleError(`${what} ${path} ${e.code === "ENOENT" ? "is missing" : `cannot be read (${e.code ?? e.message})`}`);
  }
}

function readVerified(bundleDir, caseId, file, sha256) {
  const bytes = readFile(join(bundleDir, file), `case '${caseId}': file`);
  const digest = createHash("sha256").update(bytes).digest("hex");
  if (digest !== sha256)
    throw new BundleError(`case '${caseId}': ${file} has sha256 ${digest}, manifest says ${sha256}`);
  return bytes;
}

export function loadCase(bundleDir, caseId) {
  const manifest = JSON.parse(readFile(join(bundleDir, "manifest.json"), "bundle manifest").toString("utf8"));
  if (manifest.format_version !== FORMAT_VERSION)
    throw new BundleError(`manifest.json: format_version ${manifest.format_version}, this reader knows ${FORMAT_VERSION}`);
  const entry = manifest.cases.find((c) => c.id === caseId);
  if (!entry) throw new BundleError(`case '${caseId}' is not in the manifest`);
  const tensors = parseSafetensors(readVerified(bundleDir, caseId, entry.file, entry.sha256), `case '${caseId}'`);
  for (const [group, prefix] of [["inputs", "input."], ["params", "param."], ["outputs", "output."]])
    for (const t of entry[group]) {
      const got = tensors[prefix + t.name];
      if (!got || got.shape.join() !== t.shape.join())
        throw new BundleError(`case '${caseId}': tensor ${prefix}${t.name} missing or not of shape [${t.shape}]`);
    }
  return { entry, tensors };
}

// The case's gradient file: {cotangents: {output: tensor}, grads: {"input.x" | "param.w": tensor}}.
export function loadGrad(bundleDir, entry) {
  const g = entry.grad;
  if (!g) throw new BundleError(`case '${entry.id}' has no gradient goldens (not differentiable)`);
  const tensors = parseSafetensors(readVerified(bundleDir, entry.id, g.file, g.sha256), `case '${entry.id}' ${g.file}`);
  const cotangents = {}, grads = {};
  for (const [group, prefix] of [["cotangents", "cotangent."], ["inputs", "grad.input."], ["params", "grad.param."]])
    for (const t of g[group]) {
      const got = tensors[prefix + t.name];
      if (!got || got.shape.join() !== t.shape.join())
        throw new BundleError(`case '${entry.id}': tensor ${prefix}${t.name} missing or not of shape [${t.shape}]`);
      if (group === "cotangents") cotangents[t.name] = got;
      else grads[prefix.slice("grad.".length) + t.name] = got;
    }
  return { cotangents, grads };
}

// --- a tiny reference for a few ops (float64) ---------------------------------------------------------
function linear(x, w, b) { // x [..., in], w [out, in], b [out] or undefined
  const [out, inn] = w.shape;
  const rows = x.data.length / inn;
  const data = new Array(rows * out);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      let s = 0;
      for (let i = 0; i < inn; i++) s += x.data[r * inn + i] * w.data[o * inn + i];
      data[r * out + o] = s + (b ? b.data[o] : 0);
    }
  return { shape: [...x.shape.slice(0, -1), out], data };
}

function recompute(entry, t) {
  if (entry.kind === "function" && entry.op === "linear")
    return { out: linear(t["input.x"], t["input.weight"], t["input.bias"]) };
  if (entry.kind === "spec" && entry.op === "LinearProjection")
    return { out: linear(t["input.x"], t["param.weight"], t["param.bias"]) };
  if (entry.kind === "function" && entry.op === "merge_tokens" && entry.runtime.mode === "consecutive") {
    const x = t["input.x"], r = entry.runtime.ratio; // [B, N, D] -> [B, N/r, r*D]: same C-order data
    return { out: { shape: [x.shape[0], x.shape[1] / r, x.shape[2] * r], data: x.data.slice() } };
  }
  return null;
}

// VJP of y = x W^T + b with cotangent c: dx = c W, dW = c^T x (summed over rows), db = sum_rows c.
function linearVjp(x, w, c, withBias) {
  const [out, inn] = w.shape, rows = x.data.length / inn;
  const dx = new Array(rows * inn).fill(0), dw = new Array(out * inn).fill(0), db = new Array(out).fill(0);
  for (let r = 0; r < rows; r++)
    for (let o = 0; o < out; o++) {
      const g = c.data[r * out + o];
      db[o] += g;
      for (let i = 0; i < inn; i++) {
        dx[r * inn + i] += g * w.data[o * inn + i];
        dw[o * inn + i] += g * x.data[r * inn + i];
      }
    }
  return { dx: { shape: x.shape, data: dx }, dw: { shape: w.shape, data: dw }, db: withBias ? { shape: [out], data: db } : null };
}

function recomputeGrad(entry, t, cot) {
  const c = cot.out;
  if (entry.kind === "function" && entry.op === "linear") {
    const r = linearVjp(t["input.x"], t["input.weight"], c, "input.bias" in t);
    return { "input.x": r.dx, "input.weight": r.dw, ...(r.db ? { "input.bias": r.db } : {}) };
  }
  if (entry.kind === "spec" && entry.op === "LinearProjection") {
    const r = linearVjp(t["input.x"], t["param.weight"], c, "param.bias" in t);
    return { "input.x": r.dx, "param.weight": r.dw, ...(r.db ? { "param.bias": r.db } : {}) };
  }
  if (entry.kind === "function" && entry.op === "merge_tokens" && entry.runtime.mode === "consecutive")
    return { "input.x": { shape: t["input.x"].shape, data: c.data.slice() } }; // a reshape: its VJP reshapes back
  return null;
}

// --- rounding to a lower precision (to nearest, ties to even), the values stay float64 ------------------
function roundHalfEven(r) {
  const f = Math.floor(r), d = r - f;
  return d > 0.5 || (d === 0.5 && f % 2 !== 0) ? f + 1 : f;
}

function roundBits(x, p, emin) { // p significant bits, smallest normal exponent emin
  if (!Number.isFinite(x) || x === 0) return x;
  let e = Math.floor(Math.log2(Math.abs(x)));
  if (2 ** e > Math.abs(x)) e -= 1;
  else if (2 ** (e + 1) <= Math.abs(x)) e += 1;
  const q = 2 ** (Math.max(e, emin) - p + 1);
  return roundHalfEven(x / q) * q;
}

const ROUND = {
  float64: (x) => x,
  float32: Math.fround,
  float16: (x) => roundBits(x, 11, -14),
  bfloat16: (x) => roundBits(x, 8, -126),
};

function rounded(entry, tensors, dtype) {
  const out = {};
  for (const [name, t] of Object.entries(tensors))
    out[name] = t.dtype === "F64" && !name.startsWith("output.") ? { ...t, data: t.data.map(ROUND[dtype]) } : t;
  return out;
}

// --- compare -----------------------------------------------------------------------------------------
const CODE_TO_DTYPE = { F64: "float64", F32: "float32", F16: "float16", BF16: "bfloat16" };

// One element's ratio, as the format page states it: never NaN. Equal values give 0 (also with
// atol = rtol = 0); any other value with a zero allowance, or a NaN, gives Infinity.
function elementRatio(a, b, tol) {
  if (a === b || (Number.isNaN(a) && Number.isNaN(b))) return 0;
  const err = Math.abs(a - b), allowed = tol.atol + tol.rtol * (Number.isFinite(b) ? Math.abs(b) : 0);
  return Number.isNaN(err) || !(allowed > 0) ? Infinity : err / allowed;
}

function rms(values) {
  let sum = 0;
  for (const v of values) sum += v * v;
  return values.length ? Math.sqrt(sum / values.length) : 0;
}

// The normwise ratio: 0 for equal tensors, Infinity for any other difference with a zero allowance
// or a NaN/infinite error.
function normRatio(g, w, tol, scale) {
  const err = w.map((b, i) => { const a = Number(g[i]); return a === b ? 0 : Math.abs(a - b); });
  const size = rms(err);
  if (size === 0) return 0;
  const allowed = tol.norm * Math.max(rms(w), scale);
  return Number.isFinite(size) && allowed > 0 ? size / allowed : Infinity;
}

function compare(entry, got, want, dtype) {
  const tol = entry.tolerance[dtype];
  const floating = entry.outputs.filter((o) => o.dtype.startsWith("float")).map((o) => want[o.name].data.map(Number));
  const scale = rms(floating.flat());
  let worst = 0, how = "";
  for (const o of entry.outputs) {
    const g = got[o.name], w = want[o.name];
    if (!g) return { ok: false, ratio: Infinity, detail: `output ${o.name} missing` };
    if (g.shape.join() !== w.shape.join())
      return { ok: false, ratio: Infinity, detail: `output ${o.name} has shape [${g.shape}], expected [${w.shape}]` };
    const exact = !o.dtype.startsWith("float");
    for (let i = 0; i < w.data.length; i++) {
      const a = Number(g.data[i]), b = Number(w.data[i]);
      const r = exact ? (a === b ? 0 : Infinity) : elementRatio(a, b, tol);
      if (!(r <= worst)) [worst, how] = [r, `worst in '${o.name}' (elementwise)`];
    }
    if (!exact) {
      const r = normRatio(g.data, w.data.map(Number), tol, scale);
      if (!(r <= worst)) [worst, how] = [r, `worst in '${o.name}' (normwise)`];
    }
  }
  return { ok: worst <= 1, ratio: worst, detail: how };
}

function mainGrad(bundleDir, caseId, gradsFile) {
  const { entry, tensors } = loadCase(bundleDir, caseId);
  const { cotangents, grads } = loadGrad(bundleDir, entry);
  let got, dtype = "float64", source;
  if (gradsFile) {
    const file = parseSafetensors(readFile(gradsFile, "gradients file"), gradsFile);
    got = Object.fromEntries(Object.entries(file).filter(([k]) => k.startsWith("grad."))
      .map(([k, v]) => [k.slice("grad.".length), v]));
    const codes = [...new Set(Object.values(got).map((v) => v.dtype).filter((c) => c in CODE_TO_DTYPE))];
    dtype = CODE_TO_DTYPE[codes[0]] ?? "float64";
    source = gradsFile;
  } else {
    got = recomputeGrad(entry, tensors, cotangents);
    if (!got) throw new BundleError(`case '${caseId}': this example recomputes gradients only for linear, `
      + "LinearProjection and consecutive merge_tokens; pass a gradients file instead");
    source = "recomputed in JavaScript";
  }
  const names = Object.keys(grads).map((name) => ({ name, dtype: "float64" }));
  const r = compare({ outputs: names, tolerance: entry.grad.tolerance }, got, grads, dtype);
  console.log(JSON.stringify({ case: caseId, grad: true, dtype, source, pass: r.ok, ratio: r.ratio, detail: r.detail ?? "" }));
  return r.ok ? 0 : 1;
}

function main(argv) {
  if (argv[2] === "--grad") {
    try {
      return mainGrad(argv[0], argv[1], argv[3]);
    } catch (e) {
      if (!(e instanceof BundleError) && !(e instanceof SyntaxError)) throw e;
      console.error(`error: ${e.message}`);
      return 2;
    }
  }
  const [bundleDir, caseId, outputsFile] = argv;
  if (!bundleDir || !caseId) {
    console.error("usage: node verify_case.mjs BUNDLE_DIR CASE_ID [OUTPUTS.safetensors]");
    return 2;
  }
  try {
    const { entry, tensors } = loadCase(bundleDir, caseId);
    const want = Object.fromEntries(entry.outputs.map((o) => [o.name, tensors["output." + o.name]]));
    let got, dtype = "float64", source;
    let reference = "float64 goldens";
    if (outputsFile) {
      const file = parseSafetensors(readFile(outputsFile, "outputs file"), outputsFile);
      got = Object.fromEntries(Object.entries(file).filter(([k]) => k.startsWith("output."))
        .map(([k, v]) => [k.slice("output.".length), v]));
      const codes = [...new Set(Object.values(got).map((v) => v.dtype).filter((c) => c in CODE_TO_DTYPE))];
      dtype = CODE_TO_DTYPE[codes[0]] ?? "float64";
      source = outputsFile;
      if (dtype !== "float64") {
        const again = recompute(entry, rounded(entry, tensors, dtype));
        if (again) {
          Object.assign(want, again);
          reference = `float64 on the inputs rounded to ${dtype}, recomputed in JavaScript`;
        } else reference = "float64 goldens, unrounded inputs";
      }
    } else {
      got = recompute(entry, tensors);
      if (!got) throw new BundleError(`case '${caseId}': this example recomputes only linear, LinearProjection `
        + "and consecutive merge_tokens; pass an outputs file instead");
      source = "recomputed in JavaScript";
    }
    const r = compare(entry, got, want, dtype);
    console.log(JSON.stringify({ case: caseId, dtype, source, reference, pass: r.ok, ratio: r.ratio,
      detail: r.detail ?? "" }));
    return r.ok ? 0 : 1;
  } catch (e) {
    if (!(e instanceof BundleError) && !(e instanceof SyntaxError)) throw e;
    console.error(`error: ${e.message}`);
    return 2;
  }
}

process.exitCode = main(process.argv.slice(2));
