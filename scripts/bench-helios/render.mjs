// The Helios peer for scripts/bench-browser.sh: renders one composition folder with the
// official renderer (@helios-project/renderer, exact version in package-lock.json).
//
//   node render.mjs COMPOSITION_DIR OUTPUT WIDTH HEIGHT FPS FRAMES [MODE]
//
// MODE is 'dom' (default: Page.captureScreenshot of the whole viewport, like helios-infra)
// or 'canvas' (the renderer's canvas path: the first <canvas> element only, not the page).
// The folder is served from a loopback HTTP server started here (serve.mjs), so ES modules
// load exactly as they do for helios-infra. Encoder settings are passed explicitly so they
// match helios-infra's defaults (libx264, crf 20, preset medium, yuv420p) and are overridable
// with HELIOS_PEER_CRF / HELIOS_PEER_PRESET. The browser is HELIOS_PEER_CHROMIUM (default
// Debian's /usr/lib/chromium/chromium, launched by Playwright in headless mode; Debian's
// chromium-headless-shell, the binary helios-infra uses, runs it too but its canvas frames
// come out black under the renderer's CDP virtual time), FFmpeg is HELIOS_PEER_FFMPEG
// (default /usr/bin/ffmpeg). Canvas mode uses toDataURL PNG frames
// (HELIOS_PEER_WEBCODECS=disabled, the default here; 'hardware' or 'software' selects the
// renderer's own WebCodecs path). Exits non-zero with the renderer's error on
// failure. Prints one JSON line {"frames":N,"seconds":S} on success, S being the time inside
// Renderer.render() (browser launch to FFmpeg exit); the caller times the whole process too.
// HELIOS_PEER_TIMEOUT=S (seconds, default none) makes it give up with exit code 124.
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
  // Lossless PNG frames like helios-infra's, in both modes: the renderer's defaults are JPEG
  // q90 screenshots (dom) and a 25 Mbit/s in-browser WebCodecs H.264 stream (canvas).
  intermediateImageFormat: 'png',
  webCodecsPreference: process.env.HELIOS_PEER_WEBCODECS ?? 'disabled',
  videoCodec: 'libx264',
  pixelFormat: 'yuv420p',
  crf: Number(process.env.HELIOS_PEER_CRF ?? 20),
  preset: process.env.HELIOS_PEER_PRESET ?? 'medium',
  ffmpegPath: process.env.HELIOS_PEER_FFMPEG ?? '/usr/bin/ffmpeg',
  browserConfig: {
    executablePath: process.env.HELIOS_PEER_CHROMIUM ?? '/usr/lib/chromium/chromium',
    headless: true,
    gpu: false,
  },
  stabilityTimeout: 30000,
};

// Watchdog: the renderer has no timeout of its own around a CDP call that never returns.
const limit = Number(process.env.HELIOS_PEER_TIMEOUT ?? 0);
let progress = 0;
const t0 = process.hrtime.bigint();
if (limit > 0) {
  setTimeout(() => {
    const written = Math.round(progress * n);
    console.error(`render.mjs: Helios renderer timed out: no result after ${limit} s ` +
      `(${written} of ${n} frames reported written by onProgress)`);
    process.exit(124);
  }, limit * 1000).unref();
}
let code = 0;
try {
  await new Renderer(options).render(url, path.resolve(output), {
    onProgress: (p) => { progress = p; },
  });
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
