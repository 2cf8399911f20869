// The pixel clock in Vue: a reactive ref set from helios.subscribe; Vue re-renders in its
// own scheduler's job.
import { createApp, h, ref } from 'vue';
import { makeHelios, frameOf, bits, ROWS, X0, PITCH, SIZE, label } from './clock.js';

const helios = makeHelios();
const frame = ref(frameOf(helios.getState()));
helios.subscribe((state) => { frame.value = frameOf(state); });

const App = {
  setup() {
    return () => [
      ...ROWS.flatMap((y) => bits(frame.value).map((b, i) => h('div', {
        key: `${y}-${i}`,
        class: 'bit',
        style: { left: `${X0 + PITCH * i}px`, top: `${y}px`, width: `${SIZE}px`, height: `${SIZE}px`, background: b ? '#fff' : '#000' },
      }))),
      h('div', { class: 'label' }, label('vue', frame.value)),
    ];
  },
};

createApp(App).mount('#root');
