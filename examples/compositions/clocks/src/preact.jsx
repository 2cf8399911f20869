// The pixel clock in Preact with signals: a signal set from helios.subscribe, read by the
// component (Preact re-renders it on its own debounce). Preact 11 adds no 'px' to numbers.
import { render } from 'preact';
import { signal, computed } from '@preact/signals';
import { makeHelios, frameOf, bits, ROWS, X0, PITCH, SIZE, label } from './clock.js';

const helios = makeHelios();
const frame = signal(frameOf(helios.getState()));
const strip = computed(() => bits(frame.value));
helios.subscribe((state) => { frame.value = frameOf(state); });

function App() {
  return (
    <>
      {ROWS.map((y) => strip.value.map((b, i) => (
        <div key={`${y}-${i}`} className="bit" style={{ left: `${X0 + PITCH * i}px`, top: `${y}px`, width: `${SIZE}px`, height: `${SIZE}px`, background: b ? '#fff' : '#000' }} />
      )))}
      <div className="label">{label('preact + signals', frame.value)}</div>
    </>
  );
}

render(<App />, document.getElementById('root'));
