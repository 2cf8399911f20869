// Transitions in Vue, as Helios' vue-transitions example writes them: a Sequence component
// renders its slot while the frame is in [from, from + duration), and the slot's CSS
// animations start at the sequence's start (animation-delay), seeked by Helios' DomDriver.
import { createApp, h, ref, provide, inject, computed } from 'vue';
import { Helios } from '@helios-project/core';
import { rate, fps } from './clock.js';
import './transitions.css';

const helios = new Helios({ fps, duration: 5, width: 1280, height: 720, autoSyncAnimations: true });
helios.bindToDocumentTimeline();
window.helios = helios;

const Sequence = {
  props: { from: Number, duration: Number },
  setup(props, { slots }) {
    const frame = inject('currentFrame');
    const active = computed(() => frame.value >= props.from && frame.value < props.from + props.duration);
    return () => (active.value
      ? h('div', { style: { '--sequence-start': `${props.from / fps}s`, position: 'absolute', inset: 0 } }, slots.default())
      : null);
  },
};

const box = (cls, text, style) => h('div', { class: `box ${cls}`, style }, text);

const App = {
  setup() {
    const frame = ref(helios.getState().currentFrame);
    helios.subscribe((s) => { frame.value = s.currentFrame; });
    provide('currentFrame', frame);
    return () => h('div', [
      h('h1', `Vue transitions · frame ${Math.round(frame.value)} @ ${rate.num}/${rate.den}`),
      h(Sequence, { from: 0, duration: 60 }, () => box('fade-in', 'Vue', { background: '#42b883', top: '120px', left: '100px' })),
      h(Sequence, { from: 20, duration: 100 }, () => box('grow', 'Grow', { background: '#e63946', top: '320px', left: '900px' })),
      h(Sequence, { from: 45, duration: 105 }, () => box('slide-right', 'Move', { background: '#35495e', top: '320px', left: '100px' })),
    ]);
  },
};

createApp(App).mount('#root');
