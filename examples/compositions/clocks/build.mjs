// Builds the framework clocks and transition scenes: for each, the folder <name>/ (a
// composition of its own) with its index.html and src/<entry> bundled by esbuild into
// <name>/dist/main.js (and dist/main.css where the entry imports CSS). The folders are
// written here, not committed. Svelte components are compiled with Svelte's own compiler.
//
//   npm ci --ignore-scripts && node build.mjs     (scripts/build-examples.sh does both)
import { build } from 'esbuild';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { compile } from 'svelte/compiler';

// name -> the entry bundled into <name>/dist/main.js, and what the page around it holds.
const strip = '<div id="root"></div>';
const clocks = {
  react: { entry: 'src/react.jsx', body: strip },
  'react-framer-motion': { entry: 'src/react-framer-motion.jsx', body: strip },
  vue: { entry: 'src/vue.js', body: strip },
  svelte: { entry: 'src/svelte.js', body: strip },
  preact: { entry: 'src/preact.jsx', body: strip },
  gsap: { entry: 'src/gsap.js', body: strip },
  lottie: { entry: 'src/lottie.js', body: strip },
  three: { entry: 'src/three.js', body: '<canvas id="gl" width="1280" height="720"></canvas><div id="label" class="label"></div>' },
  'react-transitions': { entry: 'src/react-transitions.jsx', body: strip, css: true },
  'vue-transitions': { entry: 'src/vue-transitions.js', body: strip, css: true },
};

// Each composition is a folder of its own (its bundle is the folder), so each gets its page.
const page = (name, { body, css }) => `<!doctype html>
<!-- clocks/${name}, written by build.mjs from clocks/src (helios-infra's conformance set). -->
<html>
<head>
<meta charset="utf-8">
<link rel="icon" href="data:,">
<title>${name}</title>
<style>
  html, body { margin: 0; padding: 0; width: 1280px; height: 720px; overflow: hidden; background: #000; }
  canvas { position: absolute; left: 0; top: 0; }
  .bit { position: absolute; }
  .label { position: absolute; left: 16px; top: 640px; font: 28px monospace; color: #888; }
</style>
${css ? '<link rel="stylesheet" href="./dist/main.css">\n' : ''}</head>
<body>
${body}
<script type="module" src="./dist/main.js"></script>
</body>
</html>
`;

const svelte = {
  name: 'svelte',
  setup(b) {
    b.onLoad({ filter: /\.svelte$/ }, async ({ path }) => {
      const { js } = compile(await readFile(path, 'utf8'), { filename: path, generate: 'client' });
      return { contents: js.code, loader: 'js', resolveDir: path.replace(/\/[^/]*$/, '') };
    });
  },
};

for (const [name, clock] of Object.entries(clocks)) {
  await mkdir(name, { recursive: true });
  await writeFile(`${name}/index.html`, page(name, clock));
  await build({
    entryPoints: [clock.entry],
    outfile: `${name}/dist/main.js`,
    bundle: true,
    format: 'esm',
    target: 'es2022',
    platform: 'browser',
    minify: true,
    legalComments: 'none',
    conditions: ['svelte', 'browser', 'production'],
    jsx: 'automatic',
    jsxImportSource: name === 'preact' ? 'preact' : 'react',
    define: {
      'process.env.NODE_ENV': '"production"',
      __VUE_OPTIONS_API__: 'false',
      __VUE_PROD_DEVTOOLS__: 'false',
      __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: 'false',
    },
    plugins: [svelte],
    logLevel: 'warning',
  });
  console.log(`clocks: built ${name}/ (index.html, dist/)`);
}
