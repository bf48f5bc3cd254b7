// Runs one MicroPython program in the official WebAssembly port.
// stdin: JSON {"files": {"/abs/path": "<base64>"}, "path": ["/dir", ...], "main": "/abs/file.py"}
// stdout: whatever the program prints; exit code 1 if it raised.
// The program may be cut into phases by lines "# --- phase ---": each phase is a
// separate runPython call. This port's gc.collect() frees nothing while Python
// code is running; garbage is reclaimed only by a collection at top level, at
// the start of a call, so memory measurements collect at phase boundaries.
import { loadMicroPython } from "../../node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs";
import fs from "fs";

const spec = JSON.parse(fs.readFileSync(0, "utf8"));
const mp = await loadMicroPython({
  stdout: (line) => process.stdout.write(line + "\n"),
  stderr: (line) => process.stderr.write(line + "\n"),
});
for (const [path, b64] of Object.entries(spec.files)) {
  const parts = path.split("/").filter(Boolean);
  let dir = "";
  for (const p of parts.slice(0, -1)) {
    dir += "/" + p;
    try { mp.FS.mkdir(dir); } catch (e) { /* exists */ }
  }
  mp.FS.writeFile(path, Buffer.from(b64, "base64"));
}
const boot = "import sys\nsys.path[:0] = " + JSON.stringify(spec.path) + "\n";
try {
  mp.runPython(boot);
  const src = new TextDecoder().decode(mp.FS.readFile(spec.main));
  for (const phase of src.split(/^# --- phase ---$/m)) {
    mp.runPython(phase);
  }
} catch (e) {
  process.stderr.write(String(e.message || e) + "\n");
  process.exit(1);
}
