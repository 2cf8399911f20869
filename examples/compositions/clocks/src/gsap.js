// The pixel clock in GSAP: a paused timeline tweens a counter from 0 to the last frame over
// the composition's duration; helios.subscribe seeks it to the frame's time, and the tween's
// onUpdate paints the strip.
import { gsap } from 'gsap';
import { makeHelios, bits, ROWS, X0, PITCH, SIZE, fps, totalFrames, label } from './clock.js';

const helios = makeHelios();
const root = document.getElementById('root');
const squares = ROWS.map((y) => Array.from({ length: 24 }, (_, i) => {
  const d = document.createElement('div');
  d.className = 'bit';
  Object.assign(d.style, { left: `${X0 + PITCH * i}px`, top: `${y}px`, width: `${SIZE}px`, height: `${SIZE}px`, background: '#000' });
  root.appendChild(d);
  return d;
}));
const text = document.createElement('div');
text.className = 'label';
root.appendChild(text);

const counter = { n: 0 };
const paint = () => {
  const n = Math.round(counter.n);
  for (const row of squares) bits(n).forEach((b, i) => gsap.set(row[i], { backgroundColor: b ? '#fff' : '#000' }));
  text.textContent = label('gsap', n);
};
const tl = gsap.timeline({ paused: true });
tl.to(counter, { n: totalFrames, duration: totalFrames / fps, ease: 'none', onUpdate: paint });
helios.subscribe((state) => { tl.seek(state.currentFrame / fps, false); paint(); });
