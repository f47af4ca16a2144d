// printer-fleet dashboard: polls the data endpoints every few seconds and redraws the page.
// Every value from the server goes into the page through textContent or an attribute, never as
// HTML, because printer ids, frontend names and Klippy states come from agents and inventories.
"use strict";

(function () {
  const root = document.getElementById("dashboard");
  const config = {
    refreshMs: Number(root.dataset.refreshS) * 1000,
    overviewUrl: root.dataset.overviewUrl,
    printersUrl: root.dataset.printersUrl,
    eventsUrl: root.dataset.eventsUrl,
    loginUrl: root.dataset.loginUrl,
  };
  const SVG = "http://www.w3.org/2000/svg";
  const MAX_EVENTS_SHOWN = 200;
  const STATE_LABELS = {
    healthy: "healthy",
    unhealthy: "unhealthy",
    draining: "draining",
    removed: "removed",
    no_admin_secret: "no admin secret",
  };

  const shownEvents = new Map();  // event id -> event, for merging overlapping polls
  let firstEventLoad = true;
  let filterOptionsKey = "";

  // -- helpers ---------------------------------------------------------------------------------

  function element(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, value);
    }
    if (text !== undefined && text !== null) {
      node.textContent = String(text);
    }
    return node;
  }

  function svgElement(tag, attributes) {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      node.setAttribute(name, String(value));
    }
    return node;
  }

  // "3 min", "2 h 5 min": the age of `since` at the server's time `now`.
  function formatAge(since, now) {
    if (!since) {
      return "not recorded";
    }
    let seconds = Math.max(0, Math.round((new Date(now) - new Date(since)) / 1000));
    if (seconds < 60) {
      return `${seconds} s`;
    }
    const minutes = Math.floor(seconds / 60);
    if (minutes < 60) {
      return `${minutes} min`;
    }
    const hours = Math.floor(minutes / 60);
    if (hours < 48) {
      return `${hours} h ${minutes % 60} min`;
    }
    return `${Math.floor(hours / 24)} d ${hours % 24} h`;
  }

  function formatTime(value) {
    return value ? new Date(value).toLocaleTimeString() : "—";
  }

  function formatDateTime(value) {
    return value ? new Date(value).toLocaleString() : "—";
  }

  async function getJson(url) {
    const response = await fetch(url, {credentials: "same-origin", headers: {Accept: "application/json"}});
    if (response.status === 401) {
      // The session expired or the admin token changed: log in again.
      window.location.assign(config.loginUrl);
      throw new Error("not logged in");
    }
    if (!response.ok) {
      let message = `HTTP ${response.status}`;
      try {
        message = (await response.json()).message || message;
      } catch (ignored) {
        // Not JSON: keep the status.
      }
      throw new Error(message);
    }
    return response.json();
  }

  function setConnection(state, text) {
    const node = document.getElementById("connection");
    node.dataset.state = state;
    node.textContent = text;
  }

  // -- frontends -------------------------------------------------------------------------------

  function loadClass(load) {
    if (load >= 0.9) {
      return "high";
    }
    return load >= 0.7 ? "medium" : "low";
  }

  function frontendRow(frontend, now) {
    const row = element("div", {class: `frontend state-${frontend.state}`, "data-frontend": frontend.name});
    const name = element("div", {class: "name"});
    name.append(element("strong", {}, frontend.name), element("span", {class: "location"}, frontend.location));

    const percent = Math.round(frontend.load * 100);
    const bar = element("div", {
      class: `bar load-${loadClass(frontend.load)}`, role: "meter", "aria-valuemin": "0",
      "aria-valuemax": String(frontend.capacity), "aria-valuenow": String(frontend.assigned),
      "aria-label": `${frontend.name} load`,
    });
    const fill = element("div", {class: "fill"});
    fill.style.width = `${Math.min(100, frontend.load * 100)}%`;
    bar.append(fill, element("span", {class: "bar-label"}, `${frontend.assigned} / ${frontend.capacity}`));

    const state = element("div", {class: "state"});
    state.append(element("span", {class: `badge ${frontend.state}`}, STATE_LABELS[frontend.state] || frontend.state),
                 element("span", {class: "since", title: formatDateTime(frontend.state_changed_at)},
                         `for ${formatAge(frontend.state_changed_at, now)}`));
    if (frontend.last_probe_error) {
      state.append(element("span", {class: "probe-error", title: frontend.last_probe_error},
                           frontend.last_probe_error));
    }
    row.append(name, bar, element("div", {class: "load"}, `${percent} %`), state);
    return row;
  }

  function renderRegions(overview) {
    const container = document.getElementById("regions");
    const regions = overview.regions.map((region) => {
      const section = element("section", {class: "region", "data-region": region.region});
      const heading = element("h3", {});
      heading.append(element("span", {}, region.region),
                     element("span", {class: "region-load"}, `${region.assigned} / ${region.capacity} printers`));
      section.append(heading);
      for (const frontend of region.frontends) {
        section.append(frontendRow(frontend, overview.generated_at));
      }
      return section;
    });
    if (regions.length === 0) {
      regions.push(element("p", {class: "empty"}, "No frontends in the inventory."));
    }
    container.replaceChildren(...regions);

    const totals = overview.totals;
    let text = `${totals.printers} printers, ${totals.assigned} assigned of capacity ${totals.capacity} ` +
      `on ${totals.frontends} frontends`;
    if (totals.unassigned > 0) {
      text += `, ${totals.unassigned} without a frontend`;
    }
    document.getElementById("totals").textContent = text;
  }

  // -- map -------------------------------------------------------------------------------------

  function drawGrid() {
    const grid = document.getElementById("map-grid");
    for (let longitude = -150; longitude <= 150; longitude += 30) {
      grid.append(svgElement("line", {x1: longitude, y1: -90, x2: longitude, y2: 90, class: "grid"}));
    }
    for (let latitude = -60; latitude <= 60; latitude += 30) {
      grid.append(svgElement("line", {x1: -180, y1: -latitude, x2: 180, y2: -latitude,
                                      class: latitude === 0 ? "grid equator" : "grid"}));
    }
  }

  // Equirectangular projection: x is the longitude and y the negated latitude, in degrees.
  function renderMap(overview) {
    const frontends = overview.regions.flatMap((region) => region.frontends);
    const largestCount = Math.max(1, ...frontends.map((f) => f.assigned), ...overview.printer_clusters.map((c) => c.count));
    const radius = (count, smallest, largest) => smallest + (largest - smallest) * Math.sqrt(count / largestCount);

    const printers = overview.printer_clusters.map((cluster) => {
      const dot = svgElement("circle", {cx: cluster.longitude, cy: -cluster.latitude,
                                        r: radius(cluster.count, 1.2, 5).toFixed(2), class: "printer-cluster"});
      const title = svgElement("title");
      title.textContent = `${cluster.count} printers near ${cluster.latitude}°, ${cluster.longitude}°`;
      dot.append(title);
      return dot;
    });
    document.getElementById("map-printers").replaceChildren(...printers);

    // Frontend circles, then the printers over them, then the names over both.
    const markers = [];
    const labels = [];
    for (const frontend of frontends) {
      const x = frontend.longitude;
      const y = -frontend.latitude;
      const size = radius(frontend.assigned, 2.5, 8);
      const marker = svgElement("circle", {cx: x, cy: y, r: size.toFixed(2), class: `frontend-marker ${frontend.state}`,
                                           "data-frontend": frontend.name});
      const title = svgElement("title");
      title.textContent = `${frontend.name} (${frontend.location}): ${frontend.assigned} of ${frontend.capacity} ` +
        `printers, ${STATE_LABELS[frontend.state] || frontend.state}`;
      marker.append(title);
      markers.push(marker);
      const label = svgElement("text", {x: (x + size + 1).toFixed(2), y: (y + 2).toFixed(2), class: "frontend-label",
                                        "data-frontend": frontend.name});
      label.textContent = `${frontend.name} · ${frontend.assigned}`;
      labels.push(label);
    }
    document.getElementById("map-frontends").replaceChildren(...markers);
    document.getElementById("map-labels").replaceChildren(...labels);
  }

  // -- events ----------------------------------------------------------------------------------

  function describe(event) {
    switch (event.kind) {
      case "move":
        return `${event.printer_id} moved ${event.from_frontend} → ${event.frontend} (${event.reason})`;
      case "unhealthy":
        return `failover: ${event.frontend} is unhealthy, ${event.count} printers to move` +
          (event.detail ? ` (${event.detail})` : "");
      case "healthy":
        return `${event.frontend} is healthy again and takes printers`;
      case "drain":
        return `${event.frontend} drained, ${event.count} printers to move`;
      case "undrain":
        return `${event.frontend} undrained and takes printers again`;
      case "added":
        return `${event.frontend} added to the inventory`;
      case "removed":
        return `${event.frontend} removed from the inventory, ${event.count} printers to move`;
      case "returned":
        return `${event.frontend} back in the inventory`;
      default:
        return `${event.kind} ${event.frontend || ""}`;
    }
  }

  function renderEvents(events) {
    let added = false;
    for (const event of events) {
      if (!shownEvents.has(event.id)) {
        event.fresh = !firstEventLoad;
        shownEvents.set(event.id, event);
        added = true;
      }
    }
    firstEventLoad = false;
    if (!added && document.getElementById("events").childElementCount > 0) {
      return;
    }
    const newestFirst = [...shownEvents.values()].sort((a, b) => b.id - a.id).slice(0, MAX_EVENTS_SHOWN);
    for (const id of [...shownEvents.keys()]) {
      if (!newestFirst.some((event) => event.id === id)) {
        shownEvents.delete(id);
      }
    }
    const items = newestFirst.map((event) => {
      const item = element("li", {class: `event ${event.kind}${event.fresh ? " fresh" : ""}`,
                                  "data-event-id": String(event.id), "data-kind": event.kind});
      item.append(element("time", {datetime: event.created_at}, formatTime(event.created_at)),
                  element("span", {class: "text"}, describe(event)));
      return item;
    });
    if (items.length === 0) {
      items.push(element("li", {class: "empty"}, "No moves or state changes recorded yet."));
    }
    document.getElementById("events").replaceChildren(...items);
  }

  // -- printers --------------------------------------------------------------------------------

  function filterForm() {
    return document.getElementById("printer-filters");
  }

  function setOptions(select, values) {
    const current = select.value;
    const options = [element("option", {value: ""}, "all")];
    for (const value of values) {
      options.push(element("option", {value: value}, value));
    }
    if (current && !values.includes(current)) {
      options.push(element("option", {value: current}, current));
    }
    select.replaceChildren(...options);
    select.value = current;
  }

  function renderFilterOptions(filters) {
    const key = JSON.stringify(filters);
    if (key === filterOptionsKey) {
      return;
    }
    filterOptionsKey = key;
    const form = filterForm();
    setOptions(form.elements.region, filters.regions);
    setOptions(form.elements.frontend, filters.frontends);
    setOptions(form.elements.share_state, filters.share_states);
    setOptions(form.elements.klippy_state, filters.klippy_states);
  }

  function filterQuery() {
    const parameters = new URLSearchParams();
    for (const select of filterForm().querySelectorAll("select")) {
      if (select.value) {
        parameters.set(select.name, select.value);
      }
    }
    return parameters;
  }

  function renderPrinters(page) {
    const rows = page.printers.map((printer) => {
      const row = element("tr", {"data-printer": printer.printer_id});
      const cells = [
        printer.printer_id, printer.frontend || "none", printer.region || "—", printer.share_state || "unreported",
        printer.klippy_state || "unreported", printer.moonraker_state || "unreported",
        formatDateTime(printer.last_heartbeat_at),
        printer.move_reason ? `${formatDateTime(printer.assigned_at)} (${printer.move_reason})` : "—",
      ];
      row.append(...cells.map((value) => element("td", {}, value)));
      return row;
    });
    document.querySelector("#printer-table tbody").replaceChildren(...rows);
    const shown = page.printers.length;
    document.getElementById("printer-count").textContent = shown < page.total
      ? `${page.total} printers match; the first ${shown} are shown: narrow the filters to see others.`
      : `${page.total} printers match.`;
  }

  async function refreshPrinters() {
    const query = filterQuery();
    query.set("limit", "200");
    renderPrinters(await getJson(`${config.printersUrl}?${query}`));
  }

  // -- refresh loop ----------------------------------------------------------------------------

  // The next refresh is scheduled when this one ends, so slow responses never pile up.
  async function refresh() {
    try {
      const [overview, events] = await Promise.all([getJson(config.overviewUrl), getJson(config.eventsUrl)]);
      renderRegions(overview);
      renderMap(overview);
      renderFilterOptions(overview.filters);
      renderEvents(events.events);
      await refreshPrinters();
      setConnection("live", `updated ${formatTime(overview.generated_at)}`);
    } catch (error) {
      setConnection("error", `update failed (${error.message}); retrying`);
    } finally {
      window.setTimeout(refresh, config.refreshMs);
    }
  }

  drawGrid();
  filterForm().addEventListener("change", () => {
    refreshPrinters().catch((error) => setConnection("error", `update failed (${error.message}); retrying`));
  });
  refresh();
})();
