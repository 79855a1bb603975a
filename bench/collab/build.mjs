// Bundles the peer's editor page (page/yws.js -> page/yws.bundle.js, not committed).
import { build } from "esbuild";
await build({ entryPoints: ["page/yws.js"], bundle: true, format: "iife", minify: true,
  outfile: "page/yws.bundle.js", logLevel: "warning" });
