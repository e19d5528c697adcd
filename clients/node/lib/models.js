'use strict';
// Model choices of a session: a descriptor string, a model object with backend options, or a fallback list.

const DESCRIPTOR = /^[a-z0-9][a-z0-9._-]*\/[^\s/][^\s]*$/i;

function checkDescriptor(descriptor) {
  if (typeof descriptor !== 'string' || !DESCRIPTOR.test(descriptor.trim())) {
    throw new TypeError(`a model descriptor reads "provider/model[:variant]", not ${JSON.stringify(descriptor)}`);
  }
  return descriptor.trim();
}

/** One model (string or { descriptor, baseUrl, apiKey, timeoutS, speed, extra }) as a ModelSpec message. */
function toSpec(model) {
  if (typeof model === 'string') return { descriptor: checkDescriptor(model) };
  if (!model || typeof model !== 'object') {
    throw new TypeError(`a model is a descriptor string or { descriptor, ... }, not ${typeof model}`);
  }
  const spec = { descriptor: checkDescriptor(model.descriptor), speed: model.speed || 0 };
  if (model.baseUrl || model.apiKey || model.timeoutS || model.extra) {
    spec.backend = {
      base_url: model.baseUrl || '',
      api_key: model.apiKey || '',
      timeout_s: model.timeoutS || 0,
      extra: Object.fromEntries(Object.entries(model.extra || {}).map(([k, v]) => [String(k), String(v)])),
    };
  }
  return spec;
}

/** A model or an ordered fallback list (the first that answers serves) as a ModelChoice message. */
function toChoice(value) {
  const items = Array.isArray(value) ? value : [value];
  if (!items.length) throw new TypeError('a fallback list needs at least one model');
  return { candidates: items.map(toSpec) };
}

/** Tools as an array of { name, description, parameters, execute } or a record name → { ... }. */
function normalizeTools(tools) {
  if (!tools) return [];
  const list = Array.isArray(tools) ? tools : Object.entries(tools).map(([name, tool]) => ({ ...tool, name }));
  return list.map((tool) => {
    if (!tool || typeof tool.name !== 'string' || !/^[a-zA-Z0-9_-]{1,64}$/.test(tool.name)) {
      const name = JSON.stringify(tool && tool.name);
      throw new TypeError(`a tool needs a name of 1-64 letters, digits, _ or -, not ${name}`);
    }
    if (tool.execute !== undefined && typeof tool.execute !== 'function') {
      throw new TypeError(`tool ${tool.name}: execute must be a function`);
    }
    return tool;
  });
}

/** The Tool messages of the config. */
function toolMessages(tools) {
  return tools.map((tool) => ({
    name: tool.name,
    description: tool.description || '',
    parameters_json: JSON.stringify(tool.parameters || { type: 'object', properties: {} }),
  }));
}

/** 'auto' | 'none' | 'required' | { name } as a ToolChoice message. */
function toToolChoice(choice) {
  if (choice === undefined || choice === null) return null;
  if (typeof choice === 'string' && ['auto', 'none', 'required'].includes(choice)) return { mode: choice, name: '' };
  if (choice && typeof choice.name === 'string' && choice.name) return { mode: 'function', name: choice.name };
  throw new TypeError(`toolChoice is 'auto', 'none', 'required' or { name }, not ${JSON.stringify(choice)}`);
}

module.exports = { toSpec, toChoice, normalizeTools, toolMessages, toToolChoice };
