import { writable } from 'svelte/store';
import { makeHelios, frameOf } from './clock.js';

const helios = makeHelios();
export const frame = writable(frameOf(helios.getState()));
helios.subscribe((state) => frame.set(frameOf(state)));
