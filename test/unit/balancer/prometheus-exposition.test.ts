import { Balancer, formatPrometheus, ManualClock, roundRobin } from '../../../src/balancer';

describe('formatPrometheus', () => {
  it('renders the text exposition format', async () => {
    const clock = new ManualClock(0);
    const b = new Balancer({ clock, strategy: roundRobin(), instances: [{ id: 'a', address: 'x' }, { id: 'b"1', address: 'y' }] });
    const l1 = b.acquire();
    clock.advance(10);
    l1.release(true);
    const l2 = b.acquire();
    clock.advance(30);
    l2.release(false);
    b.acquire(); // stays in flight on a
    b.setHealth('b"1', false);
    // prom-client's text format: one blank line between families, common labels after the sample's own.
    expect(await formatPrometheus(b.stats(), { labels: { service: 'api' } })).toBe(
      [
        '# HELP kysely_scale_balancer_instances Instances by state.',
        '# TYPE kysely_scale_balancer_instances gauge',
        'kysely_scale_balancer_instances{state="healthy",service="api"} 1',
        'kysely_scale_balancer_instances{state="unhealthy",service="api"} 1',
        'kysely_scale_balancer_instances{state="ejected",service="api"} 0',
        '',
        '# HELP kysely_scale_balancer_panic 1 while panic mode routes to every instance.',
        '# TYPE kysely_scale_balancer_panic gauge',
        'kysely_scale_balancer_panic{service="api"} 0',
        '',
        '# HELP kysely_scale_balancer_no_instance_errors_total Picks refused because no instance was usable or fit.',
        '# TYPE kysely_scale_balancer_no_instance_errors_total counter',
        'kysely_scale_balancer_no_instance_errors_total{service="api"} 0',
        '',
        '# HELP kysely_scale_balancer_instance_up 1 when the instance is healthy and not ejected.',
        '# TYPE kysely_scale_balancer_instance_up gauge',
        'kysely_scale_balancer_instance_up{instance="a",service="api"} 1',
        'kysely_scale_balancer_instance_up{instance="b\\"1",service="api"} 0',
        '',
        '# HELP kysely_scale_balancer_instance_weight Effective weight (after slow start).',
        '# TYPE kysely_scale_balancer_instance_weight gauge',
        'kysely_scale_balancer_instance_weight{instance="a",service="api"} 1',
        'kysely_scale_balancer_instance_weight{instance="b\\"1",service="api"} 1',
        '',
        '# HELP kysely_scale_balancer_requests_in_flight Calls picked and not yet released.',
        '# TYPE kysely_scale_balancer_requests_in_flight gauge',
        'kysely_scale_balancer_requests_in_flight{instance="a",service="api"} 1',
        'kysely_scale_balancer_requests_in_flight{instance="b\\"1",service="api"} 0',
        '',
        '# HELP kysely_scale_balancer_requests_total Finished calls by outcome (cancelled: the caller gave up).',
        '# TYPE kysely_scale_balancer_requests_total counter',
        'kysely_scale_balancer_requests_total{instance="a",outcome="success",service="api"} 1',
        'kysely_scale_balancer_requests_total{instance="a",outcome="failure",service="api"} 0',
        'kysely_scale_balancer_requests_total{instance="a",outcome="cancelled",service="api"} 0',
        'kysely_scale_balancer_requests_total{instance="b\\"1",outcome="success",service="api"} 0',
        'kysely_scale_balancer_requests_total{instance="b\\"1",outcome="failure",service="api"} 1',
        'kysely_scale_balancer_requests_total{instance="b\\"1",outcome="cancelled",service="api"} 0',
        '',
        '# HELP kysely_scale_balancer_request_duration_seconds Call latency.',
        '# TYPE kysely_scale_balancer_request_duration_seconds summary',
        'kysely_scale_balancer_request_duration_seconds{instance="a",quantile="0.5",service="api"} 0.01',
        'kysely_scale_balancer_request_duration_seconds{instance="a",quantile="0.99",service="api"} 0.01',
        'kysely_scale_balancer_request_duration_seconds_sum{instance="a",service="api"} 0.01',
        'kysely_scale_balancer_request_duration_seconds_count{instance="a",service="api"} 1',
        'kysely_scale_balancer_request_duration_seconds{instance="b\\"1",quantile="0.5",service="api"} 0.03',
        'kysely_scale_balancer_request_duration_seconds{instance="b\\"1",quantile="0.99",service="api"} 0.03',
        'kysely_scale_balancer_request_duration_seconds_sum{instance="b\\"1",service="api"} 0.03',
        'kysely_scale_balancer_request_duration_seconds_count{instance="b\\"1",service="api"} 1',
        '',
        '# HELP kysely_scale_balancer_instance_healthy 1 while the instance passes its health checks.',
        '# TYPE kysely_scale_balancer_instance_healthy gauge',
        'kysely_scale_balancer_instance_healthy{instance="a",service="api"} 1',
        'kysely_scale_balancer_instance_healthy{instance="b\\"1",service="api"} 0',
        '',
        '# HELP kysely_scale_balancer_instance_ejected 1 while the instance is ejected for consecutive failures.',
        '# TYPE kysely_scale_balancer_instance_ejected gauge',
        'kysely_scale_balancer_instance_ejected{instance="a",service="api"} 0',
        'kysely_scale_balancer_instance_ejected{instance="b\\"1",service="api"} 0',
        '',
      ].join('\n'),
    );
  });
});

describe('formatPrometheus validity', () => {
  it('escapes backslash, quote and newline in label values', async () => {
    const b = new Balancer({ strategy: roundRobin(), instances: [{ id: 'a\\b"c\nd', address: 'x' }] });
    const line = (await formatPrometheus(b.stats())).split('\n').find((l) => l.startsWith('kysely_scale_balancer_instance_up{'));
    expect(line).toBe('kysely_scale_balancer_instance_up{instance="a\\\\b\\"c\\nd"} 1');
  });

  it('gives every family one HELP and one TYPE line before its samples, and only valid sample lines', async () => {
    const b = new Balancer({ strategy: roundRobin(), instances: [{ id: 'a', address: 'x' }, { id: 'b', address: 'y' }] });
    b.acquire().release(true);
    b.acquire().cancel();
    const text = await formatPrometheus(b.stats(), { labels: { zone: 'eu\n1' } });
    const seen = new Map<string, string[]>();
    let family = '';
    for (const line of text.trimEnd().split('\n')) {
      if (line === '') continue; // prom-client separates families with a blank line
      const meta = /^# (HELP|TYPE) (\S+) (.+)$/.exec(line);
      if (meta !== null) {
        family = meta[2] as string;
        seen.set(family, [...(seen.get(family) ?? []), meta[1] as string]);
        continue;
      }
      expect(line).toMatch(/^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*",?)*\})? (NaN|[+-]Inf|-?[0-9.e+-]+)$/);
      expect(line.startsWith(family)).toBe(true);
    }
    for (const kinds of seen.values()) expect(kinds).toEqual(['HELP', 'TYPE']);
  });

  it('keeps counters monotonic: a cancelled call adds to its own outcome and never lowers another', async () => {
    const b = new Balancer({ strategy: roundRobin(), instances: [{ id: 'a', address: 'x' }] });
    const value = async (outcome: string): Promise<number> =>
      Number(new RegExp(`requests_total\\{instance="a",outcome="${outcome}"\\} (\\d+)`).exec(await formatPrometheus(b.stats()))?.[1]);
    b.acquire().release(true);
    b.acquire().release(false);
    const lease = b.acquire();
    lease.cancel();
    lease.release(false); // ignored: already released
    expect(await Promise.all([value('success'), value('failure'), value('cancelled')])).toEqual([1, 1, 1]);
    b.acquire().release(true);
    expect(await Promise.all([value('success'), value('failure'), value('cancelled')])).toEqual([2, 1, 1]);
  });

  it('refuses an invalid prefix or label name, naming the option', () => {
    const stats = new Balancer().stats();
    expect(() => formatPrometheus(stats, { prefix: 'bad-prefix' })).toThrow(/`prefix`/);
    expect(() => formatPrometheus(stats, { labels: { 'my-label': 'x' } })).toThrow(/`labels`/);
    expect(() => formatPrometheus(stats, { labels: { instance: 'x' } })).toThrow(/`labels`/);
  });
});
