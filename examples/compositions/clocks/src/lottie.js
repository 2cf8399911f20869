// The pixel clock in Lottie (lottie-web, SVG renderer): an animation whose squares turn
// white and black on hold keyframes (bit i flips every 2^i frames), built here as Lottie JSON
// and stepped with goToAndStop(frame, true) from helios.subscribe.
import lottie from 'lottie-web';
import { makeHelios, frameOf, ROWS, X0, PITCH, SIZE, BITS, fps, totalFrames, label } from './clock.js';

const helios = makeHelios();

// Opacity of bit i over [0, totalFrames]: 0 for frames with the bit clear, 100 with it set
// (hold keyframes; a bit that never flips in the duration is a constant 0).
const opacity = (i) => {
  const k = [];
  for (let t = 0, on = 0; t <= totalFrames; t += 2 ** i, on ^= 1) k.push({ t, s: [on ? 100 : 0], h: 1 });
  return k.length > 1 ? { a: 1, k } : { a: 0, k: 0 };
};
// A white solid layer (48x48) per square, its top-left corner at the square's.
const square = (y, i, ind) => ({
  ddd: 0, ind, ty: 1, nm: `bit ${y}/${i}`, sr: 1, ip: 0, op: totalFrames + 1, st: 0, bm: 0,
  sc: '#ffffff', sw: SIZE, sh: SIZE,
  ks: { o: opacity(i), r: { a: 0, k: 0 }, p: { a: 0, k: [X0 + PITCH * i, y, 0] },
    a: { a: 0, k: [0, 0, 0] }, s: { a: 0, k: [100, 100, 100] } },
});
const layers = [];
ROWS.forEach((y) => { for (let i = 0; i < BITS; i++) layers.push(square(y, i, layers.length + 1)); });
const animationData = { v: '5.7.4', fr: fps, ip: 0, op: totalFrames + 1, w: 1280, h: 720, nm: 'clock', ddd: 0, assets: [], layers };

const anim = lottie.loadAnimation({
  container: document.getElementById('root'),
  renderer: 'svg',
  loop: false,
  autoplay: false,
  animationData,
});
const text = document.createElement('div');
text.className = 'label';
document.body.appendChild(text);
helios.subscribe((state) => {
  const n = frameOf(state);
  anim.goToAndStop(n, true);
  text.textContent = label('lottie', n);
});
