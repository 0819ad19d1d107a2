/** The demo's order database: a stand-in for the shop's order API. */
export interface Order {
  orderId: string;
  status: 'processing' | 'shipped' | 'delivered' | 'cancelled';
  carrier: string | null;
  eta: string | null;
  items: string[];
}

export const ORDERS: ReadonlyMap<string, Order> = new Map(
  (
    [
      { orderId: 'A-1001', status: 'shipped', carrier: 'DHL', eta: '2026-11-25', items: ['espresso machine'] },
      { orderId: 'A-1002', status: 'processing', carrier: null, eta: null, items: ['grinder', 'filters'] },
      { orderId: 'A-1003', status: 'delivered', carrier: 'UPS', eta: '2026-11-18', items: ['milk jug'] },
      { orderId: 'A-1004', status: 'cancelled', carrier: null, eta: null, items: ['tamper'] },
    ] satisfies Order[]
  ).map((o) => [o.orderId, o]),
);
