// A title card rendered from input props. helios-infra gives the props to the composition
// before its first frame with helios.setInputProps (merged over these defaults), so the
// schema below validates them: `--props '{"score":-1}'` fails at plan time with Helios'
// own message naming the prop.
//
// The picture, top to bottom:
//   - 16 blocks (40x20 px each) spelling `score` in binary, most significant bit first
//     (white = 1): machine-readable, for tests;
//   - the background in `color`, with `title` and the score written on it;
//   - a progress bar that grows with the frame.
import { Helios } from '@helios-project/core';

const W = 640;
const H = 360;

const helios = new Helios({
  fps: 24,
  duration: 2,
  width: W,
  height: H,
  schema: {
    title: { type: 'string', default: 'Hello', maxLength: 60 },
    score: { type: 'number', minimum: 0, maximum: 65535, default: 0 },
    color: { type: 'color', default: '#204080' },
  },
});
helios.bindToDocumentTimeline();
window.helios = helios;

const ctx = document.getElementById('card').getContext('2d');

function draw(frame, props) {
  const total = helios.duration.value * helios.fps.value;
  ctx.fillStyle = props.color;
  ctx.fillRect(0, 0, W, H);

  const score = Math.max(0, Math.min(65535, Math.round(props.score)));
  for (let bit = 0; bit < 16; bit++) {
    ctx.fillStyle = (score >> (15 - bit)) & 1 ? '#ffffff' : '#000000';
    ctx.fillRect(bit * 40, 0, 40, 20);
  }

  ctx.fillStyle = '#ffffff';
  ctx.font = 'bold 44px sans-serif';
  ctx.textAlign = 'center';
  ctx.fillText(props.title, W / 2, 170);
  ctx.font = '28px monospace';
  ctx.fillText(`score ${score}`, W / 2, 230);

  ctx.fillStyle = 'rgba(255,255,255,0.8)';
  ctx.fillRect(40, 320, ((W - 80) * frame) / Math.max(1, total - 1), 12);
}

helios.subscribe((state) => {
  draw(Math.round(state.currentFrame), state.inputProps);
});
