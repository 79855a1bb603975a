// Builds the browser guest app into ct/webclient/static/ (shipped in the Python
// package, so operators need no Node at run time).
//
//   node js/build.mjs [--outdir DIR]
//
// The output is deterministic (no timestamps, no absolute paths, no source maps):
// tests/webclient/test_bundle.py rebuilds into a temporary folder and compares.
import * as esbuild from "esbuild";
import { fileURLToPath } from "node:url";
import path from "node:path";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");

function parseOutdir(argv) {
  const i = argv.indexOf("--outdir");
  if (i === -1) return path.join(root, "ct", "webclient", "static");
  if (i + 1 >= argv.length) throw new Error("--outdir needs a folder");
  return path.resolve(argv[i + 1]);
}

const outdir = parseOutdir(process.argv.slice(2));

const common = {
  absWorkingDir: here,
  bundle: true,
  minify: true,
  sourcemap: false,
  legalComments: "none",
  charset: "utf8",
  logLevel: "warning",
  target: ["es2020", "chrome90", "firefox90", "safari15"],
};

await esbuild.build({
  ...common,
  entryPoints: [path.join(here, "app", "main.js")],
  outfile: path.join(outdir, "join.js"),
  format: "iife",
  platform: "browser",
});

await esbuild.build({
  ...common,
  entryPoints: [path.join(here, "app", "join.css")],
  outfile: path.join(outdir, "join.css"),
});
