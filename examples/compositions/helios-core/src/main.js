// A composition built on @helios-project/core.
//
// Helios owns the timeline (30 fps, 10 s, 1280x720). bindToDocumentTimeline() makes it
// follow the renderer's virtual clock (window.__HELIOS_VIRTUAL_TIME__), and
// autoSyncAnimations lets Helios' DomDriver seek the page's CSS/WAAPI animations too.
// Everything on screen is derived from state.currentFrame in the subscriber.
import { Helios, interpolate, spring, Easing } from '@helios-project/core';

const W = 1280;
const H = 720;
const FPS = 30;
const DURATION = 10;

const helios = new Helios({
  fps: FPS,
  duration: DURATION,
  width: W,
  height: H,
  autoSyncAnimations: true,
});
helios.bindToDocumentTimeline();
window.helios = helios;

const canvas = document.getElementById('stage');
const ctx = canvas.getContext('2d');
const title = document.getElementById('title');
const counter = document.getElementById('counter');
const caption = document.getElementById('caption');

const WORDS = ['plan', 'render', 'encode', 'stitch', 'ship'];
const TAU = Math.PI * 2;

function drawFrame(frame) {
  const t = frame / FPS;

  // background: a vertical gradient whose hue drifts over the composition
  const hue = interpolate(frame, [0, DURATION * FPS], [220, 300]);
  const bg = ctx.createLinearGradient(0, 0, 0, H);
  bg.addColorStop(0, `hsl(${hue}, 45%, 14%)`);
  bg.addColorStop(1, `hsl(${hue + 40}, 50%, 6%)`);
  ctx.fillStyle = bg;
  ctx.fillRect(0, 0, W, H);

  // a ring of dots that springs open, then rotates
  const open = spring({ frame, fps: FPS, from: 0, to: 1, config: { stiffness: 80, damping: 10 } });
  const cx = 900;
  const cy = 380;
  for (let i = 0; i < 24; i++) {
    const a = (i / 24) * TAU + t * 0.6;
    const r = 40 + 170 * open + 12 * Math.sin(t * 3 + i);
    ctx.fillStyle = `hsl(${(hue + i * 15) % 360}, 85%, 62%)`;
    ctx.beginPath();
    ctx.arc(cx + Math.cos(a) * r, cy + Math.sin(a) * r, 9 + 4 * Math.sin(t * 2 + i * 0.7), 0, TAU);
    ctx.fill();
  }

  // a sine wave sweeping across the bottom
  ctx.strokeStyle = 'rgba(255,255,255,0.55)';
  ctx.lineWidth = 3;
  ctx.beginPath();
  for (let x = 0; x <= W; x += 8) {
    const y = 620 + Math.sin(x / 90 - t * 2.5) * 30 * open;
    if (x === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  }
  ctx.stroke();

  // DOM: title slides in with an eased interpolation, counter and caption follow the frame
  const x = interpolate(frame, [0, 40], [-500, 80], {
    extrapolateRight: 'clamp',
    easing: Easing.cubic.out,
  });
  title.style.transform = `translateX(${x.toFixed(2)}px)`;
  counter.textContent = `frame ${String(frame).padStart(3, '0')} / ${DURATION * FPS}  ·  ${t.toFixed(2)} s`;
  caption.textContent = WORDS[Math.min(WORDS.length - 1, Math.floor(t / 2))];
}

helios.subscribe((state) => {
  drawFrame(Math.round(state.currentFrame));
});
