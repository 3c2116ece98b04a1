// Bundles the page (src/app.js) with the TypeScript client it imports from clients/typescript into
// internal/httpapi/web/app.js. Every package is resolved from here (web/node_modules, the
// pinned copies), whether or not clients/typescript has node_modules of its own, so the bundle
// is the same on every machine.
import * as esbuild from "esbuild";

const here = import.meta.dirname;
const packagesFromHere = {
  name: "packages-from-web",
  setup(build) {
    build.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.pluginData === "web") return undefined;
      return build.resolve(args.path, { kind: args.kind, resolveDir: here, pluginData: "web" });
    });
  },
};

await esbuild.build({
  entryPoints: [here + "/src/app.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: "es2020",
  legalComments: "none",
  logLevel: "warning",
  outfile: here + "/../internal/httpapi/web/app.js",
  plugins: [packagesFromHere],
});
