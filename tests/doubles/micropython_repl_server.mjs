// Serves the REPL of the official MicroPython WebAssembly port on a loopback TCP socket, so
// host tools that speak to a board over a serial port (mpremote, via pyserial's
// `socket://127.0.0.1:PORT`) can run for real without a board.
//
//   node tests/doubles/micropython_repl_server.mjs [--host 127.0.0.1] [--port 0]
//
// Prints "listening PORT" on stdout once ready. One MicroPython instance lives as long as the
// server, so its filesystem persists across connections, soft resets and `machine.reset()`,
// like a board's flash. One client at a time: a second connection is closed at once, like a
// serial port another program holds.
//
// What it adds to the port's event-driven REPL, and why:
// - raw-paste (`\x05A\x01`): this port's raw REPL does not implement it (it stalls), so the
//   request is answered `R\x00` ("understood, not supported") and the client falls back to
//   the plain raw REPL, as with older firmware.
// - soft reset (Ctrl-D at an empty prompt): the port's REPL returns instead of rebooting; the
//   server prints "MPY: soft reboot", forgets imported modules and globals, re-initializes the
//   REPL and, if it was in raw mode, re-enters it, as a board does.
// - `machine.reset()`: the port has no `machine`; a module with just `reset` stands in for a
//   hard reset (friendly REPL, modules forgotten, files kept). boot.py/main.py are not run.
// - errno: Emscripten numbers errors like WASI (ENOENT 44, EEXIST 20, ...); MicroPython ports
//   use Linux numbers (ENOENT 2, EEXIST 17), which mpremote decodes from "OSError: N".
//   Error numbers in printed tracebacks are rewritten to MicroPython's.
import net from "node:net";
import { loadMicroPython } from "../../node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, arg, i, all) => {
    if (arg.startsWith("--")) pairs.push([arg.slice(2), all[i + 1]]);
    return pairs;
  }, []),
);
const host = args.host ?? "127.0.0.1";
const port = Number(args.port ?? 0);

// Emscripten (WASI) errno -> MicroPython (py/mperrno.h, Linux values).
const ERRNO = new Map([
  [63, 1], [44, 2], [71, 3], [27, 4], [29, 5], [60, 6], [1, 7], [45, 8], [8, 9], [12, 10],
  [6, 11], [48, 12], [2, 13], [21, 14], [10, 16], [20, 17], [75, 18], [43, 19], [54, 20],
  [31, 21], [28, 22], [41, 23], [33, 24], [59, 25], [74, 26], [22, 27], [51, 28], [70, 29],
  [69, 30], [34, 31], [64, 32], [18, 33], [68, 34], [37, 36], [52, 38], [55, 39], [58, 95],
  [138, 95], [5, 97], [3, 98], [13, 103], [15, 104], [42, 105], [30, 106], [53, 107],
  [73, 110], [14, 111], [23, 113], [7, 114], [26, 115], [11, 125],
]);
const mapErrno = (text) =>
  text
    .replace(/OSError: (\d+)/g, (m, n) => `OSError: ${ERRNO.get(Number(n)) ?? n}`)
    .replace(/\[Errno (\d+)\]/g, (m, n) => `[Errno ${ERRNO.get(Number(n)) ?? n}]`);

let sink = null; // where output goes: the connected client, or nowhere
let pending = [];
let resetRequested = false;
const mp = await loadMicroPython({
  linebuffer: false,
  stdout: (bytes) => pending.push(...bytes),
  stderr: (bytes) => pending.push(...bytes),
});
mp.registerJsModule("machine", {
  reset: () => {
    resetRequested = true;
  },
});

function flush() {
  if (pending.length === 0) return;
  const text = mapErrno(Buffer.from(pending).toString("latin1"));
  pending = [];
  if (sink) sink.write(Buffer.from(text, "latin1"));
}

function forgetModules() {
  // A soft reset gives a fresh heap: imported modules and __main__ globals are gone.
  mp.runPython(
    "import sys\nsys.modules.clear()\n" +
      "[globals().pop(k) for k in list(globals()) if not k.startswith('__')]\n" +
      "__import__('gc').collect()\n",
  );
}

let raw = false; // raw REPL (Ctrl-A) or friendly REPL
let held = []; // bytes of a possible raw-paste request, held back until it is complete

async function reboot(keepRaw, banner) {
  forgetModules();
  pending.push(...Buffer.from(banner, "latin1"));
  flush();
  mp.replInit(); // prints the friendly banner and prompt
  if (keepRaw) {
    pending = []; // a board soft-rebooting in raw REPL goes straight back to it
    await mp.replProcessCharWithAsyncify(0x01);
  }
  raw = keepRaw;
  flush();
}

async function feed(byte) {
  const result = await mp.replProcessCharWithAsyncify(byte);
  if (byte === 0x01 && !raw) raw = true;
  else if (byte === 0x02 && raw) raw = false;
  if (resetRequested) {
    resetRequested = false;
    flush();
    await reboot(false, "\r\n");
  } else if (result !== 0) {
    flush();
    await reboot(raw, "MPY: soft reboot\r\n");
  }
}

async function process_(byte) {
  if (raw && (held.length > 0 || byte === 0x05)) {
    held.push(byte);
    const want = [0x05, 0x41, 0x01];
    if (held.every((b, i) => b === want[i])) {
      if (held.length === want.length) {
        held = [];
        if (sink) sink.write(Buffer.from("R\x00", "latin1"));
      }
      return;
    }
    const bytes = held;
    held = [];
    for (const b of bytes) await feed(b);
    return;
  }
  await feed(byte);
}

mp.replInit();
pending = []; // the banner of the first boot goes to nobody
let queue = Promise.resolve();

const server = net.createServer((socket) => {
  if (sink) {
    socket.destroy(); // busy, like a serial port opened by another program
    return;
  }
  sink = socket;
  socket.setNoDelay(true);
  socket.on("data", (data) => {
    queue = queue
      .then(async () => {
        for (const byte of data) await process_(byte);
        flush();
      })
      .catch((error) => process.stderr.write(`repl server: ${error?.stack ?? error}\n`));
  });
  const release = () => {
    if (sink === socket) sink = null;
  };
  socket.on("close", release);
  socket.on("error", release);
});
server.listen(port, host, () => {
  process.stdout.write(`listening ${server.address().port}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
