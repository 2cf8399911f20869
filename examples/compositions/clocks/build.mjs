// Builds the framework clocks and transition scenes: src/<entry> bundled by esbuild into
// <name>/dist/main.js (and dist/main.css where the entry imports CSS), beside each index.html. Svelte components are compiled with Svelte's own compiler.
//
//   npm ci --ignore-scripts && node build.mjs     (scripts/build-examples.sh does both)
import { build } from 'esbuild';
import { readFile } from 'node:fs/promises';
import { compile } from 'svelte/compiler';

const clocks = {
  react: 'src/react.jsx',
  'react-framer-motion': 'src/react-framer-motion.jsx',
  vue: 'src/vue.js',
  svelte: 'src/svelte.js',
  preact: 'src/preact.jsx',
  gsap: 'src/gsap.js',
  lottie: 'src/lottie.js',
  three: 'src/three.js',
  'react-transitions': 'src/react-transitions.jsx',
  'vue-transitions': 'src/vue-transitions.js',
};

const svelte = {
  name: 'svelte',
  setup(b) {
    b.onLoad({ filter: /\.svelte$/ }, async ({ path }) => {
      const { js } = compile(await readFile(path, 'utf8'), { filename: path, generate: 'client' });
      return { contents: js.code, loader: 'js', resolveDir: path.replace(/\/[^/]*$/, '') };
    });
  },
};

for (const [name, entry] of Object.entries(clocks)) {
  await build({
    entryPoints: [entry],
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
  console.log(`clocks: built ${name}/dist/main.js`);
}
