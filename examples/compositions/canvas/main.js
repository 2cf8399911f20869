// Orbits: a canvas 2D composition drawn from the requestAnimationFrame timestamp only.
// Every frame is a pure function of t (seconds): nothing depends on the previous frame,
// the real clock or Math.random, so any frame can be rendered first.

const W = 1280;
const H = 720;
const FPS = 30; // only used for the timecode label
const TAU = Math.PI * 2;

const canvas = document.getElementById('stage');
// The picture fills the viewport (the render's --size); drawing stays in 1280x720 units.
canvas.width = window.innerWidth || W;
canvas.height = window.innerHeight || H;
const ctx = canvas.getContext('2d');
ctx.setTransform(canvas.width / W, 0, 0, canvas.height / H, 0, 0);

// A fixed star field from a tiny seeded PRNG (mulberry32), computed once.
function mulberry32(seed) {
  return () => {
    let t = (seed = (seed + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(20240101);
const stars = Array.from({ length: 160 }, () => ({
  x: rand() * W,
  y: rand() * H,
  r: 0.6 + rand() * 1.6,
  phase: rand() * TAU,
  speed: 0.5 + rand() * 2,
}));

const planets = [
  { radius: 90, size: 14, period: 3.0, hue: 190 },
  { radius: 150, size: 20, period: 5.0, hue: 320 },
  { radius: 215, size: 11, period: 7.5, hue: 45 },
  { radius: 280, size: 26, period: 11.0, hue: 140 },
];

const CX = W / 2;
const CY = H / 2 + 10;

function planetPos(p, t) {
  const a = (t / p.period) * TAU + p.radius; // radius doubles as a phase offset
  // slightly elliptical, tilted orbits
  return [CX + Math.cos(a) * p.radius * 1.35, CY + Math.sin(a) * p.radius * 0.55];
}

function timecode(t) {
  const f = Math.round(t * FPS);
  const s = Math.floor(f / FPS);
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(Math.floor(s / 60))}:${pad(s % 60)}:${pad(f % FPS)}  ·  frame ${f}`;
}

function draw(ts) {
  const t = ts / 1000;

  // background: slowly rotating hue gradient
  const h = (t * 12) % 360;
  const bg = ctx.createLinearGradient(0, 0, W, H);
  bg.addColorStop(0, `hsl(${h}, 55%, 10%)`);
  bg.addColorStop(1, `hsl(${(h + 70) % 360}, 60%, 6%)`);
  ctx.fillStyle = bg;
  ctx.fillRect(0, 0, W, H);

  // twinkling stars
  for (const s of stars) {
    const a = 0.35 + 0.65 * (0.5 + 0.5 * Math.sin(t * s.speed + s.phase));
    ctx.fillStyle = `rgba(255,255,255,${a.toFixed(3)})`;
    ctx.beginPath();
    ctx.arc(s.x, s.y, s.r, 0, TAU);
    ctx.fill();
  }

  // orbit paths
  ctx.lineWidth = 1;
  ctx.strokeStyle = 'rgba(255,255,255,0.12)';
  for (const p of planets) {
    ctx.beginPath();
    ctx.ellipse(CX, CY, p.radius * 1.35, p.radius * 0.55, 0, 0, TAU);
    ctx.stroke();
  }

  // pulsing sun
  const pulse = 1 + 0.08 * Math.sin(t * TAU * 0.5);
  const sun = ctx.createRadialGradient(CX, CY, 0, CX, CY, 70 * pulse);
  sun.addColorStop(0, 'rgba(255,250,220,1)');
  sun.addColorStop(0.35, 'rgba(255,200,80,0.9)');
  sun.addColorStop(1, 'rgba(255,120,20,0)');
  ctx.fillStyle = sun;
  ctx.beginPath();
  ctx.arc(CX, CY, 70 * pulse, 0, TAU);
  ctx.fill();

  // planets with analytic trails (positions at earlier times, fading out)
  for (const p of planets) {
    for (let k = 12; k >= 1; k--) {
      const [x, y] = planetPos(p, t - k * 0.04);
      ctx.fillStyle = `hsla(${p.hue}, 90%, 60%, ${(0.25 * (1 - k / 13)).toFixed(3)})`;
      ctx.beginPath();
      ctx.arc(x, y, p.size * (1 - k / 20), 0, TAU);
      ctx.fill();
    }
    const [x, y] = planetPos(p, t);
    const g = ctx.createRadialGradient(x - p.size / 3, y - p.size / 3, 1, x, y, p.size);
    g.addColorStop(0, `hsl(${p.hue}, 100%, 85%)`);
    g.addColorStop(1, `hsl(${p.hue}, 80%, 45%)`);
    ctx.fillStyle = g;
    ctx.beginPath();
    ctx.arc(x, y, p.size, 0, TAU);
    ctx.fill();
  }

  // title sliding in, then gently floating
  const enter = Math.min(1, t / 1.5);
  const ease = 1 - (1 - enter) ** 3;
  ctx.save();
  ctx.globalAlpha = ease;
  ctx.fillStyle = '#ffffff';
  ctx.font = 'bold 64px sans-serif';
  ctx.textBaseline = 'top';
  ctx.fillText('helios · canvas', 60 - (1 - ease) * 400, 50 + Math.sin(t * 1.3) * 6);
  ctx.font = '28px sans-serif';
  ctx.fillStyle = 'rgba(255,255,255,0.75)';
  ctx.fillText('drawn from the requestAnimationFrame timestamp', 62 - (1 - ease) * 600, 126);
  ctx.restore();

  // timecode
  ctx.fillStyle = 'rgba(255,255,255,0.85)';
  ctx.font = '26px monospace';
  ctx.textBaseline = 'alphabetic';
  ctx.textAlign = 'right';
  ctx.fillText(timecode(t), W - 40, H - 36);
  ctx.textAlign = 'left';

  // progress bar (10 s loop)
  const prog = (t % 10) / 10;
  ctx.fillStyle = 'rgba(255,255,255,0.15)';
  ctx.fillRect(40, H - 20, W - 80, 4);
  ctx.fillStyle = `hsl(${h}, 90%, 65%)`;
  ctx.fillRect(40, H - 20, (W - 80) * prog, 4);

  requestAnimationFrame(draw);
}

requestAnimationFrame(draw);
