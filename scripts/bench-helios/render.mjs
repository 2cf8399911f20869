// The Helios peer for scripts/bench-browser.sh: renders one composition folder with the
// official renderer (@helios-project/renderer, exact version in package-lock.json).
//
//   node render.mjs COMPOSITION_DIR OUTPUT WIDTH HEIGHT FPS FRAMES [MODE]
//
// MODE is 'dom' (default: Page.captureScreenshot of the whole viewport, like helios-infra)
// or 'canvas' (the renderer's canvas path: the first <canvas> only, through WebCodecs).
// The folder is served from a loopback HTTP server started here (serve.mjs), so ES modules
// load exactly as they do for helios-infra. Encoder settings are passed explicitly so they
// match helios-infra's defaults (libx264, crf 20, preset medium, yuv420p) and are overridable
// with HELIOS_PEER_CRF / HELIOS_PEER_PRESET. The browser is HELIOS_PEER_CHROMIUM (default
// Debian's chromium-headless-shell, the binary helios-infra uses), FFmpeg is
// HELIOS_PEER_FFMPEG (default /usr/bin/ffmpeg). Exits non-zero with the renderer's error on
// failure. Prints one JSON line {"frames":N,"seconds":S} on success, S being the time inside
// Renderer.render() (browser launch to FFmpeg exit); the caller times the whole process too.
import path from 'node:path';
import { Renderer } from '@helios-project/renderer';
import { serve } from './serve.mjs';

const [dir, output, width, height, fps, frames, mode = 'dom'] = process.argv.slice(2);
if (!dir || !output || !width || !height || !fps || !frames) {
  console.error('usage: node render.mjs COMPOSITION_DIR OUTPUT WIDTH HEIGHT FPS FRAMES [dom|canvas]');
  process.exit(2);
}
if (mode !== 'dom' && mode !== 'canvas') {
  console.error(`render.mjs: mode must be dom or canvas, not ${mode}`);
  process.exit(2);
}

const server = await serve(path.resolve(dir));
const url = `http://127.0.0.1:${server.address().port}/index.html`;
const n = Number(frames);
const rate = Number(fps);
const options = {
  width: Number(width),
  height: Number(height),
  fps: rate,
  durationInSeconds: n / rate,
  frameCount: n,
  startFrame: 0,
  mode,
  // Lossless screenshots like helios-infra's PNG frames (the renderer's default is JPEG q90).
  intermediateImageFormat: 'png',
  videoCodec: 'libx264',
  pixelFormat: 'yuv420p',
  crf: Number(process.env.HELIOS_PEER_CRF ?? 20),
  preset: process.env.HELIOS_PEER_PRESET ?? 'medium',
  ffmpegPath: process.env.HELIOS_PEER_FFMPEG ?? '/usr/bin/ffmpeg',
  browserConfig: {
    executablePath: process.env.HELIOS_PEER_CHROMIUM ?? '/usr/lib/chromium/chromium-headless-shell',
    headless: true,
    gpu: false,
  },
  stabilityTimeout: 30000,
};

const t0 = process.hrtime.bigint();
let code = 0;
try {
  await new Renderer(options).render(url, path.resolve(output));
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  console.log(JSON.stringify({ frames: n, seconds }));
} catch (err) {
  console.error(`render.mjs: Helios renderer failed: ${err && err.stack ? err.stack : err}`);
  code = 1;
} finally {
  server.close();
  server.closeAllConnections?.();
}
process.exit(code);
